#!/usr/bin/env bun
import { main } from "../src/cli/main.ts";

// `memobuild cache ls | head`: a reader that goes away is not an error.
const quietOnClosedPipe = (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
};
process.stdout.on("error", quietOnClosedPipe);
process.on("uncaughtException", quietOnClosedPipe);

process.exitCode = await main(process.argv.slice(2));
