import { describe, expect, test } from "bun:test";
import { buildUser, reportedCommand } from "./invocation.ts";

describe("the command line a build reports", () => {
  test("tokens, secret-named build args, known secret values and credentials in URLs are masked; the rest is kept to rerun it", () => {
    const args = [
      "build", ".", "-t", "app:1", "--remote-token", "tok-123456789", "--remote-token=tok-123456789",
      "--build-arg", "NPM_TOKEN=npm_abcdef", "--build-arg=DB_PASSWORD=hunter22", "--build-arg", "VERSION=1.2",
      "--build-arg", "NOTE=uses s3cr3t-value inside", "--remote", "https://bot:pat-0000@cache.example:7070",
      "--secret", "id=npm,src=/home/a/.npmrc", "--target", "test",
    ];
    expect(reportedCommand(args, ["s3cr3t-value", "x"])).toEqual([
      "memobuild", "build", ".", "-t", "app:1", "--remote-token", "***", "--remote-token=***",
      "--build-arg", "NPM_TOKEN=***", "--build-arg=DB_PASSWORD=***", "--build-arg", "VERSION=1.2",
      "--build-arg", "NOTE=uses *** inside", "--remote", "https://cache.example:7070",
      "--secret", "id=npm,src=/home/a/.npmrc", "--target", "test",
    ]);
    // A token given to a flag the list does not know is still masked when the client knows it.
    expect(reportedCommand(["build", "--label", "t=tok-123456789"], ["tok-123456789"])).toEqual(["memobuild", "build", "--label", "t=***"]);
  });

  test("the user: the CI's actor, else who ran sudo, else this user", () => {
    expect(buildUser({ GITHUB_ACTOR: "octo", USER: "root" })).toBe("octo");
    expect(buildUser({ GITLAB_USER_LOGIN: "gl", USER: "root" })).toBe("gl");
    expect(buildUser({ SUDO_USER: "ana", USER: "root" })).toBe("ana");
    expect(buildUser({ USER: "bo" })).toBe("bo");
  });
});
