import { expect, test } from "bun:test";
import type { StepResult } from "../solver/result.ts";
import { builderIdOf, dockerPurl } from "./record.ts";

test("base images as purls: Docker Hub's library images by bare name, other registries by repository_url", () => {
  expect(dockerPurl("alpine:3.19", "linux/amd64")).toBe("pkg:docker/alpine@3.19?platform=linux%2Famd64");
  expect(dockerPurl("me/app", "linux/arm64")).toBe("pkg:docker/me/app@latest?platform=linux%2Farm64");
  expect(dockerPurl("127.0.0.1:5000/team/base:1", "linux/amd64")).toBe("pkg:docker/team/base@1?repository_url=127.0.0.1%3A5000%2Fteam%2Fbase&platform=linux%2Famd64");
  expect(dockerPurl(`busybox@sha256:${"a".repeat(64)}`, "linux/amd64")).toBe(`pkg:docker/busybox@sha256%3A${"a".repeat(64)}?platform=linux%2Famd64`);
});

test("the builder of a build spread over workers is the worker that ran its last stage (its steps come last)", () => {
  const step = (id: string, status: StepResult["status"], worker?: string) => ({ id, status, ...(worker ? { worker } : {}) }) as StepResult;
  const spread = [step("a/0", "executed", "w1"), step("a/1", "executed", "w1"), step("2/0", "executed", "w2"), step("2/1", "executed", "w2"), step("later/0", "skipped", "w2-skipped")];
  expect(builderIdOf({ steps: spread }, "host")).toBe("https://memobuild.dev/builders/worker/w2");
  expect(builderIdOf({ steps: [step("0/0", "executed")] }, "host")).toBe("https://memobuild.dev/builders/local/host");
});
