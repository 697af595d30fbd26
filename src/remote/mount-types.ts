/** Shared cache mounts as the server lists them: types only, so the dashboard (in the browser) can use them. */

/** What a version is named by: a display name, never part of any check but the signature. */
export interface MountLabel {
  id: string;
  scope: string | null;
}

/** What one version is, as the server lists it (without its files). */
export interface MountVersionInfo {
  id: string;
  parent: string | null;
  signer: string | null;
  /** The token that published it (a short hash prefix, as in the server's stats). */
  author: string | null;
  created: number;
  published: number;
  files: number;
  size: number;
  /** Files whose content was not in the parent version. */
  changed: number;
}

export interface MountScopeInfo {
  scope: string;
  label: MountLabel;
  versions: number;
  /** Bytes of the distinct files of every version kept. */
  stored: number;
  current: MountVersionInfo;
}
