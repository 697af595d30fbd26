import { describe, expect, test } from "bun:test";
import { ciMetadata } from "./ci.ts";

describe("ciMetadata", () => {
  test("GitHub Actions: a pull request's head branch and the run's page", () => {
    const env = {
      GITHUB_ACTIONS: "true",
      GITHUB_REPOSITORY: "acme/app",
      GITHUB_HEAD_REF: "fix-login",
      GITHUB_REF_NAME: "42/merge",
      GITHUB_SHA: "abc123",
      GITHUB_SERVER_URL: "https://github.com",
      GITHUB_RUN_ID: "7",
    };
    expect(ciMetadata(env)).toEqual({ provider: "github-actions", repository: "acme/app", branch: "fix-login", commit: "abc123", url: "https://github.com/acme/app/actions/runs/7" });
    expect(ciMetadata({ ...env, GITHUB_HEAD_REF: "" })!.branch).toBe("42/merge");
  });

  test("GitLab, CircleCI, Jenkins and Buildkite name their fields differently", () => {
    expect(ciMetadata({ GITLAB_CI: "true", CI: "true", CI_PROJECT_PATH: "g/p", CI_COMMIT_REF_NAME: "main", CI_COMMIT_SHA: "s", CI_JOB_URL: "https://gl/j/1" })).toEqual({
      provider: "gitlab",
      repository: "g/p",
      branch: "main",
      commit: "s",
      url: "https://gl/j/1",
    });
    expect(ciMetadata({ CIRCLECI: "true", CIRCLE_PROJECT_USERNAME: "o", CIRCLE_PROJECT_REPONAME: "r", CIRCLE_BRANCH: "b" })).toEqual({ provider: "circleci", repository: "o/r", branch: "b" });
    expect(ciMetadata({ JENKINS_URL: "https://j/", BRANCH_NAME: "dev", GIT_COMMIT: "c", BUILD_URL: "https://j/job/1/" })).toEqual({ provider: "jenkins", branch: "dev", commit: "c", url: "https://j/job/1/" });
    expect(ciMetadata({ BUILDKITE: "true", BUILDKITE_BRANCH: "x" })).toEqual({ provider: "buildkite", branch: "x" });
  });

  test("a generic CI is named as such; a laptop is not CI", () => {
    expect(ciMetadata({ CI: "true" })).toEqual({ provider: "ci" });
    expect(ciMetadata({ HOME: "/root" })).toBeUndefined();
  });

  test("a repository URL's credentials are not reported (Jenkins' GIT_URL may carry user:token@)", () => {
    const metadata = ciMetadata({ JENKINS_URL: "https://j/", GIT_URL: "https://jenkins:11a2b3c4d5e6@git.example.com/org/repo.git", BUILD_URL: "https://j/job/1/?token=trigger-secret" });
    expect(metadata).toMatchObject({ repository: "https://git.example.com/org/repo.git", url: "https://j/job/1/?token=***" });
  });

  test("values are clipped to labels", () => {
    expect(ciMetadata({ GITLAB_CI: "true", CI_COMMIT_REF_NAME: "b".repeat(10_000) })!.branch!.length).toBe(300);
  });
});
