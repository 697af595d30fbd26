/**
 * Which CI system runs this build, read from the variables each one sets, so the build hub can
 * show a build's repository, branch, commit and job page. Each value is clipped: it is shown to
 * the whole team and must stay a label, not a payload.
 */
import type { CiMetadata } from "./events.ts";
import { redactCredentials } from "../util/redact.ts";

export type { CiMetadata } from "./events.ts";

type Env = Record<string, string | undefined>;

interface Provider {
  name: string;
  detect: (env: Env) => boolean;
  read: (env: Env) => Omit<CiMetadata, "provider">;
}

const PROVIDERS: Provider[] = [
  {
    name: "github-actions",
    detect: (env) => env.GITHUB_ACTIONS === "true",
    read: (env) => ({
      repository: env.GITHUB_REPOSITORY,
      // A pull request's own branch, not the merge ref.
      branch: env.GITHUB_HEAD_REF || env.GITHUB_REF_NAME,
      commit: env.GITHUB_SHA,
      url: env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}` : undefined,
    }),
  },
  {
    name: "gitlab",
    detect: (env) => env.GITLAB_CI === "true",
    read: (env) => ({ repository: env.CI_PROJECT_PATH, branch: env.CI_MERGE_REQUEST_SOURCE_BRANCH_NAME || env.CI_COMMIT_REF_NAME, commit: env.CI_COMMIT_SHA, url: env.CI_JOB_URL }),
  },
  {
    name: "circleci",
    detect: (env) => env.CIRCLECI === "true",
    read: (env) => ({
      repository: env.CIRCLE_PROJECT_USERNAME && env.CIRCLE_PROJECT_REPONAME ? `${env.CIRCLE_PROJECT_USERNAME}/${env.CIRCLE_PROJECT_REPONAME}` : undefined,
      branch: env.CIRCLE_BRANCH,
      commit: env.CIRCLE_SHA1,
      url: env.CIRCLE_BUILD_URL,
    }),
  },
  {
    name: "buildkite",
    detect: (env) => env.BUILDKITE === "true",
    read: (env) => ({ repository: env.BUILDKITE_REPO, branch: env.BUILDKITE_BRANCH, commit: env.BUILDKITE_COMMIT, url: env.BUILDKITE_BUILD_URL }),
  },
  {
    name: "azure-pipelines",
    detect: (env) => env.TF_BUILD?.toLowerCase() === "true",
    read: (env) => ({
      repository: env.BUILD_REPOSITORY_NAME,
      branch: env.SYSTEM_PULLREQUEST_SOURCEBRANCH || env.BUILD_SOURCEBRANCHNAME,
      commit: env.BUILD_SOURCEVERSION,
      url: env.SYSTEM_COLLECTIONURI && env.SYSTEM_TEAMPROJECT && env.BUILD_BUILDID ? `${env.SYSTEM_COLLECTIONURI}${env.SYSTEM_TEAMPROJECT}/_build/results?buildId=${env.BUILD_BUILDID}` : undefined,
    }),
  },
  {
    name: "bitbucket",
    detect: (env) => env.BITBUCKET_BUILD_NUMBER !== undefined,
    read: (env) => ({
      repository: env.BITBUCKET_REPO_FULL_NAME,
      branch: env.BITBUCKET_BRANCH,
      commit: env.BITBUCKET_COMMIT,
      url: env.BITBUCKET_REPO_FULL_NAME ? `https://bitbucket.org/${env.BITBUCKET_REPO_FULL_NAME}/pipelines/results/${env.BITBUCKET_BUILD_NUMBER}` : undefined,
    }),
  },
  {
    name: "travis",
    detect: (env) => env.TRAVIS === "true",
    read: (env) => ({ repository: env.TRAVIS_REPO_SLUG, branch: env.TRAVIS_PULL_REQUEST_BRANCH || env.TRAVIS_BRANCH, commit: env.TRAVIS_COMMIT, url: env.TRAVIS_BUILD_WEB_URL }),
  },
  {
    name: "jenkins",
    detect: (env) => env.JENKINS_URL !== undefined,
    read: (env) => ({ repository: env.GIT_URL, branch: env.CHANGE_BRANCH || env.BRANCH_NAME || env.GIT_BRANCH, commit: env.GIT_COMMIT, url: env.BUILD_URL }),
  },
];

/** A label, not a payload, and never a credential (Jenkins' GIT_URL may hold `user:token@`). */
const clip = (value: string | undefined) => (value ? redactCredentials(value).slice(0, 300) : undefined);

export function ciMetadata(env: Env = process.env): CiMetadata | undefined {
  const provider = PROVIDERS.find((p) => p.detect(env));
  if (!provider) return env.CI === "true" || env.CI === "1" ? { provider: "ci" } : undefined;
  const read = provider.read(env);
  const metadata: CiMetadata = { provider: provider.name };
  for (const field of ["repository", "branch", "commit", "url"] as const) {
    const value = clip(read[field]);
    if (value) metadata[field] = value;
  }
  return metadata;
}
