import type { Command } from "commander";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { withStore } from "../store.ts";
import { DEFAULT_PATH } from "../../image/config.ts";
import { loadImage } from "../../image/layout.ts";
import { requireImage } from "../../image/lookup.ts";
import { runContainer } from "../../executor/runtime.ts";
import { mountOverlay, unmount } from "../../snapshot/overlay.ts";
import { resolveUser } from "../../snapshot/view.ts";
import { removeTree, Root } from "../../rootfs/root.ts";
import { UsageError } from "../errors.ts";

export function registerRun(program: Command) {
  program
    .command("run")
    .summary("run an image from the local store (with the same OCI runtime as RUN)")
    .argument("<image>", "image name, or image ID (as build -q prints it; a unique prefix will do)")
    .argument("[command...]", "command and arguments (after --), replacing the image's CMD")
    .option("--network <mode>", "none|host", "none")
    .option("--cache-dir <dir>", "cache directory")
    .action(async (ref: string, command: string[], flags: { network: string; cacheDir?: string }) => {
      if (process.getuid?.() !== 0) throw new UsageError("memobuild run needs root (overlayfs and the OCI runtime)");
      await withStore(flags.cacheDir, async (store) => {
        const work = store.tempDir("container");
        const rootfs = join(work, "rootfs");
        let mounted = false;
        try {
          const image = loadImage(store, requireImage(store, ref).manifestDigest);
          const lowers = await Promise.all(image.config.rootfs.diff_ids.map((diffId) => store.ensureSnapshot(diffId)));
          // `work` is our own staging directory (beside the rootfs mount, never inside an image): plain mkdir is right.
          mkdirSync(join(work, "bundle"));
          mountOverlay({ layers: lowers, upper: join(work, "upper"), work: join(work, "work"), target: rootfs });
          mounted = true;
          const c = image.config.config;
          const args = [...(c.Entrypoint ?? []), ...(command.length ? command : (c.Cmd ?? []))];
          if (args.length === 0) throw new UsageError(`image ${ref} has no CMD or ENTRYPOINT: give a command`);
          const env = c.Env?.length ? c.Env : [`PATH=${DEFAULT_PATH}`];
          const cwd = c.WorkingDir || "/";
          const user = Root.with(rootfs, (root) => {
            const resolved = resolveUser(c.User, (path) => root.readFile(path)?.toString("utf8"));
            root.mkdirAll(cwd, { mode: 0o755, owner: { uid: resolved.uid, gid: resolved.gid } });
            return resolved;
          });
          const result = await runContainer(
            { rootfs, args, env, cwd, uid: user.uid, gid: user.gid, additionalGids: user.additionalGids, mounts: [], network: flags.network === "host" ? "host" : "none" },
            join(work, "bundle"),
            (line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(line + "\n"),
          );
          process.exitCode = result.exitCode;
        } finally {
          if (mounted) unmount(rootfs);
          removeTree(work); // holds an image tree: never follow a link or cross a mount left there
        }
      });
    });
}
