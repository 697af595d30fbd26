import { describe, expect, test } from "bun:test";
import { planDockerfile } from "../frontend/plan.ts";
import { applyInstruction, emptyConfig, type ImageConfig } from "./config.ts";

const platform = { os: "linux", architecture: "amd64" };

/** Applies every metadata instruction of a one-stage Dockerfile to `base`. */
function configOf(dockerfile: string, base: ImageConfig = emptyConfig(platform)): ImageConfig {
  const plan = planDockerfile(dockerfile, { platform });
  const config = structuredClone(base);
  const state = { cmdSet: false };
  for (const step of plan.stages[0].steps.slice(1)) applyInstruction(config, step.instruction, state);
  return config;
}

describe("image config rules", () => {
  test("ENV replaces a variable in place; WORKDIR is relative to the previous one", () => {
    const c = configOf("FROM a\nENV A=1 B=2\nENV A=3\nWORKDIR /app\nWORKDIR src\nWORKDIR ../lib\n");
    expect(c.config.Env).toEqual(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=3", "B=2"]);
    expect(c.config.WorkingDir).toBe("/app/lib");
  });

  test("shell-form CMD and ENTRYPOINT go through SHELL", () => {
    const c = configOf('FROM a\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\nCMD run --fast\n');
    expect(c.config.Cmd).toEqual(["/bin/bash", "-o", "pipefail", "-c", "run --fast"]);
  });

  test("ENTRYPOINT drops a CMD inherited from the base image, not one set in this stage", () => {
    const base = configOf('FROM a\nCMD ["base-cmd"]\n');
    expect(configOf('FROM a\nENTRYPOINT ["app"]\n', base).config).toMatchObject({ Entrypoint: ["app"], Cmd: null });
    expect(configOf('FROM a\nCMD ["x"]\nENTRYPOINT ["app"]\n', base).config).toMatchObject({ Entrypoint: ["app"], Cmd: ["x"] });
  });

  test("EXPOSE, VOLUME, LABEL, STOPSIGNAL, USER, HEALTHCHECK, ONBUILD, MAINTAINER", () => {
    const c = configOf(
      'FROM a\nEXPOSE 80 53/udp\nVOLUME /data\nLABEL a=b\nSTOPSIGNAL SIGINT\nUSER app\nHEALTHCHECK --interval=30s --retries=2 CMD ["check"]\nONBUILD RUN make\nMAINTAINER me\n',
    );
    expect(c.config).toMatchObject({
      ExposedPorts: { "80/tcp": {}, "53/udp": {} },
      Volumes: { "/data": {} },
      Labels: { a: "b" },
      StopSignal: "SIGINT",
      User: "app",
      Healthcheck: { Test: ["CMD", "check"], Interval: 30_000_000_000, Retries: 2 },
      OnBuild: ["RUN make"],
    });
    expect(c.author).toBe("me");
    expect(configOf("FROM a\nHEALTHCHECK NONE\n").config.Healthcheck).toEqual({ Test: ["NONE"] });
  });
});
