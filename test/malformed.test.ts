/**
 * Malformed Dockerfiles: each must fail with exactly one line, `PATH:LINE:COL: message`, exit 1.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuild } from "./support/binary.ts";

const CASES: { name: string; dockerfile: string; at: string; message: string }[] = [
  {
    name: "unknown instruction",
    dockerfile: "FROM a\nRUNN make\n",
    at: "2:1",
    message: "unknown instruction: RUNN (did you mean RUN?)",
  },
  {
    name: "unknown flag",
    dockerfile: "FROM a\nCOPY --frm=b x /\n",
    at: "2:6",
    message: "unknown flag: --frm (COPY accepts --from, --chown, --chmod, --link, --parents, --exclude)",
  },
  {
    name: "flag on an instruction without flags",
    dockerfile: "FROM a\n  CMD --x run\n",
    at: "2:7",
    message: "unknown flag: --x (CMD takes no flags)",
  },
  {
    name: "flag missing its value",
    dockerfile: "FROM a\nCOPY --chown x /\n",
    at: "2:6",
    message: "missing a value on flag: --chown",
  },
  {
    name: "boolean flag with a bad value",
    dockerfile: "FROM a\nCOPY --link=maybe x /\n",
    at: "2:6",
    message: "expecting boolean value for flag --link, not: maybe",
  },
  {
    name: "unterminated heredoc",
    dockerfile: "FROM a\nRUN <<END\necho hi\n",
    at: "2:1",
    message: 'unterminated heredoc: no line "END" ends it',
  },
  {
    name: "COPY --from its own stage",
    dockerfile: "FROM a AS build\nCOPY --from=build /x /x\n",
    at: "2:1",
    message: 'circular dependency: stage "build" reads from itself (--from=build)',
  },
  {
    name: "COPY --from a later stage",
    dockerfile: "FROM a AS one\nCOPY --from=two /x /x\nFROM a AS two\n",
    at: "2:1",
    message: 'circular dependency: stage "one" reads from stage "two", which is not defined before it',
  },
  {
    name: "RUN --mount from a later stage",
    dockerfile: "FROM a AS one\nRUN --mount=from=two,target=/t make\nFROM a AS two\n",
    at: "2:1",
    message: 'circular dependency: stage "one" reads from stage "two", which is not defined before it',
  },
  {
    name: "stage built FROM itself",
    dockerfile: "FROM loop AS loop\n",
    at: "1:1",
    message: 'circular dependency: stage "loop" is built FROM itself',
  },
  { name: "duplicate stage name", dockerfile: "FROM a AS x\nFROM b AS x\n", at: "2:1", message: 'duplicate stage name "x"' },
  {
    name: "invalid stage name",
    dockerfile: "FROM a AS 1st\n",
    at: "1:11",
    message: 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols',
  },
  {
    name: "FROM with two arguments",
    dockerfile: "FROM a b\n",
    at: "1:1",
    message: "FROM requires either one argument, or three: FROM <image> AS <name>",
  },
  {
    name: "ENV word without =",
    dockerfile: "FROM a\nENV A=1 B\n",
    at: "2:1",
    message: 'Syntax error - can\'t find = in "B". Must be of the form: name=value',
  },
  {
    name: "unclosed ${",
    dockerfile: "FROM a\nWORKDIR ${DIR\n",
    at: "2:1",
    message: "failed to process \"${DIR\": syntax error: missing '}'",
  },
  {
    name: "required variable unset",
    dockerfile: "FROM a\nARG V\nWORKDIR ${V:?set V with --build-arg}\n",
    at: "3:1",
    message: 'failed to process "${V:?set V with --build-arg}": V: set V with --build-arg',
  },
  {
    name: "invalid escape directive",
    dockerfile: "# escape=x\nFROM a\n",
    at: "1:1",
    message: "invalid escape token 'x' does not match ` or \\",
  },
  {
    name: "duplicate directive",
    dockerfile: "# syntax=docker/dockerfile:1\n# syntax=docker/dockerfile:1\nFROM a\n",
    at: "2:1",
    message: "only one syntax parser directive can be used",
  },
  {
    name: "unsupported syntax frontend",
    dockerfile: "# syntax=example.com/frontend\nFROM a\n",
    at: "1:1",
    message: 'unsupported syntax frontend "example.com/frontend": MemoBuild implements docker/dockerfile only',
  },
  {
    name: "SHELL in shell form",
    dockerfile: "FROM a\nSHELL /bin/bash -c\n",
    at: "2:1",
    message: 'SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]',
  },
  {
    name: "JSON array of non-strings",
    dockerfile: 'FROM a\nCMD ["run", 1]\n',
    at: "2:1",
    message: "when using JSON array syntax, arrays must be comprised of strings only",
  },
  {
    name: "unknown mount type",
    dockerfile: "FROM a\nRUN --mount=type=nfs,target=/x make\n",
    at: "2:5",
    message: 'invalid --mount: unknown mount type "nfs" (use bind, cache, tmpfs, secret or ssh)',
  },
  {
    name: "unknown mount option",
    dockerfile: "FROM a\nRUN --mount=type=cache,target=/x,colour=red make\n",
    at: "2:5",
    message: 'invalid --mount: unknown option "colour" for type=cache',
  },
  {
    name: "bad HEALTHCHECK interval",
    dockerfile: "FROM a\nHEALTHCHECK --interval=soon CMD true\n",
    at: "2:13",
    message: 'invalid --interval "soon": use a duration such as 30s or 1m30s',
  },
  {
    name: "COPY without destination",
    dockerfile: "FROM a\nCOPY only-one\n",
    at: "2:1",
    message: "COPY requires at least two arguments, but only 1 was provided. Destination could not be determined.",
  },
  {
    name: "instruction before FROM",
    dockerfile: "ARG V=1\nRUN echo\nFROM a\n",
    at: "2:1",
    message: "RUN is not allowed before the first FROM (only ARG is)",
  },
  {
    name: "no FROM at all",
    dockerfile: "ARG V=1\n",
    at: "1:1",
    message: "no FROM instruction: a Dockerfile needs at least one stage",
  },
  { name: "no instructions", dockerfile: "# nothing here\n\n", at: "2:1", message: "file with no instructions" },
  {
    name: "bad EXPOSE port",
    dockerfile: "FROM a\nEXPOSE 80/http\n",
    at: "2:8",
    message: 'invalid port "80/http": use PORT[-PORT][/tcp|/udp|/sctp]',
  },
  {
    name: "ONBUILD ONBUILD",
    dockerfile: "FROM a\nONBUILD ONBUILD RUN x\n",
    at: "2:1",
    message: "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
  },
  { name: "RUN without a command", dockerfile: "FROM a\nRUN\n", at: "2:1", message: "RUN requires at least one argument" },
  { name: "bad STOPSIGNAL", dockerfile: "FROM a\nSTOPSIGNAL SIGNOPE\n", at: "2:1", message: "invalid signal: SIGNOPE" },
];

const work = mkdtempSync(join(tmpdir(), "memobuild-malformed-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("malformed Dockerfiles give one located line and exit 1", () => {
  CASES.forEach((c, index) => {
    test(c.name, () => {
      const file = join(work, `case-${index}.Dockerfile`);
      writeFileSync(file, c.dockerfile);
      const result = runMemobuild(["graph", work, "-f", file]);
      expect(result.stdout).toBe("");
      expect(result.stderr).toBe(`memobuild: ${file}:${c.at}: ${c.message}\n`);
      expect(result.exitCode).toBe(1);
    });
  });

  test("an unknown --target names the flag, the file and the stages, and points at no line", () => {
    const file = join(work, "target.Dockerfile");
    writeFileSync(file, "FROM a AS one\nFROM b AS two\n");
    const result = runMemobuild(["graph", work, "-f", file, "--target", "three"]);
    expect(result.stderr).toBe(`memobuild: --target three: ${file} has no such stage (stages: one, two)\n`);
    expect(result.exitCode).toBe(2);
  });
});
