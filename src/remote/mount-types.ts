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
  /** The name the server's token file gives that token (`TOKEN rw name=ci`), shown instead of the prefix. */
  authorName?: string;
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
  /** Files changed by each of the last versions kept, newest first (at most 10). */
  changes: number[];
  /** What fetching this scope's versions downloaded and saved, over every fetch reported. */
  fetched: MountFetchTotals;
}

/** What one fetch of a version did, as the client reports it (POST /v1/mounts/{scope}/fetched). */
export interface MountFetchReport {
  /** Files (distinct contents) downloaded, and their bytes. */
  filesFetched: number;
  bytesFetched: number;
  /** Files of the version the machine had already: not downloaded. */
  filesKept: number;
  bytesKept: number;
  /** How long the fetch took, listing to last file applied. */
  ms: number;
}

/** A scope's fetches added up. `savedMs` estimates the time the kept files would have taken (see mounts.ts). */
export interface MountFetchTotals extends MountFetchReport {
  fetches: number;
  savedMs: number;
}
