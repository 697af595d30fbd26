/**
 * What `memobuild init` looks at in a project: its Dockerfiles, the stages and ARGs of one, and
 * what a .dockerignore should leave out (dependencies, VCS data, build output, secrets, large
 * files). Pure reads, no prompts: the wizard and `--yes` share them.
 */
import { existsSync, lstatSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { planDockerfile } from "../frontend/plan.ts";

/** Directories never searched: dependencies and output, which hold no Dockerfile of the project. */
const SKIPPED = new Set([".git", "node_modules", "vendor", ".venv", "venv", "target", "dist", "build", "out", ".next", "__pycache__", ".cache", "coverage"]);
const MAX_DEPTH = 4;
const MAX_ENTRIES = 20_000;
export const LARGE_FILE_BYTES = 10 * 1024 * 1024;

const isDockerfileName = (name: string) =>
  (/^(Dockerfile|Containerfile)$/.test(name) || /\.(Dockerfile|Containerfile)$/.test(name) || /^(Dockerfile|Containerfile)\.[\w.-]+$/.test(name)) && !name.endsWith(".dockerignore");

interface Walked {
  dockerfiles: string[];
  largeFiles: string[];
}

/** One bounded walk (depth and entry count), never following symlinks. */
function walk(root: string): Walked {
  const found: Walked = { dockerfiles: [], largeFiles: [] };
  let seen = 0;
  const visit = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return; // unreadable: nothing to propose from it
    }
    for (const name of names) {
      if (++seen > MAX_ENTRIES) return;
      const path = join(dir, name);
      const stat = lstatSync(path, { throwIfNoEntry: false });
      if (!stat) continue;
      if (stat.isDirectory()) {
        if (!SKIPPED.has(name) && depth < MAX_DEPTH) visit(path, depth + 1);
      } else if (stat.isFile()) {
        if (isDockerfileName(name)) found.dockerfiles.push(relative(root, path));
        if (stat.size >= LARGE_FILE_BYTES) found.largeFiles.push(relative(root, path));
      }
    }
  };
  visit(root, 0);
  found.dockerfiles.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return found;
}

/** ./Dockerfile first, then shallower paths. */
const rank = (path: string) => (path === "Dockerfile" ? -1 : path.split("/").length);

export function findDockerfiles(root: string): string[] {
  return walk(root).dockerfiles;
}

export interface IgnoreProposal {
  pattern: string;
  reason: string;
}

/** What a .dockerignore for this project should hold, each with why; only for what exists. */
export function proposeIgnores(root: string): IgnoreProposal[] {
  const proposals: IgnoreProposal[] = [];
  const has = (name: string) => existsSync(join(root, name));
  if (has(".git")) proposals.push({ pattern: ".git", reason: "version control data" });
  if (has("node_modules")) proposals.push({ pattern: "**/node_modules", reason: "dependencies (installed in the image)" });
  for (const dir of ["dist", "build", "out", "target", "coverage", ".next", ".cache", ".venv", "venv"]) {
    if (has(dir)) proposals.push({ pattern: dir, reason: "build output or a local environment" });
  }
  if (has("__pycache__")) proposals.push({ pattern: "**/__pycache__", reason: "Python bytecode" });
  if (readdirSafe(root).some((name) => /^\.env(\..+)?$/.test(name))) proposals.push({ pattern: ".env*", reason: "local secrets: they would end up in the image and the cache" });
  for (const file of walk(root).largeFiles) {
    if (!proposals.some((p) => file.startsWith(`${p.pattern}/`))) proposals.push({ pattern: file, reason: `a large file (${LARGE_FILE_BYTES / 1024 / 1024} MiB or more)` });
  }
  return proposals;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export interface DockerfileSummary {
  /** Stage names (or indexes, for unnamed stages), in order; the last is the default target. */
  stages: string[];
  /** ARGs the Dockerfile declares. */
  args: string[];
  /** Why it could not be read, if it could not (the wizard still goes on). */
  problem?: string;
}

export function summarizeDockerfile(text: string, file: string): DockerfileSummary {
  try {
    const plan = planDockerfile(text, { file });
    const args = new Set(plan.metaArgs.map((a) => a.name));
    for (const stage of plan.stages) for (const step of stage.steps) if (step.instruction.kind === "ARG") for (const arg of step.instruction.args) args.add(arg.name);
    return { stages: plan.stages.map((s) => s.id), args: [...args] };
  } catch (error) {
    return { stages: [], args: [], problem: (error as Error).message };
  }
}
