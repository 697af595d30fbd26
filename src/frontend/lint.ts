/**
 * Build checks, as BuildKit's `--check` runs them (its rule names, so `# check=skip=NAME` and
 * documentation carry over): read from the parse tree as written (casing, forms, keywords) and
 * from the plan (variables nothing defined). Each finding names its rule, file and line.
 * `# check=skip=Rule1,Rule2` (or `skip=all`) turns rules off; `# check=error=true` makes any
 * finding fail the build.
 */
import type { Plan } from "./plan.ts";
import type { Node, ParseResult } from "./parser.ts";

export interface Finding {
  rule: string;
  message: string;
  file: string;
  line: number;
}

export interface CheckPolicy {
  skip: Set<string>;
  /** `# check=error=true`: findings fail the build. */
  error: boolean;
}

export const RULES = [
  "StageNameCasing",
  "FromAsCasing",
  "ConsistentInstructionCasing",
  "ReservedStageName",
  "JSONArgsRecommended",
  "MaintainerDeprecated",
  "UndefinedVar",
  "UndefinedArgInFrom",
  "SecretsUsedInArgOrEnv",
  "WorkdirRelativePath",
  "MultipleInstructionsDisallowed",
  "LegacyKeyValueFormat",
  "NoEmptyContinuation",
] as const;

/** Words in ARG and ENV names that say the value is a credential (BuildKit's list, in spirit). */
const SECRET_WORDS = /(?:^|[_-])(?:api[_-]?key|apikey|auth|credentials?|passwd|password|pswd|secret|token)(?:$|[_-])/i;
/** ...and the ones that look so but are not (a public key, a token's URL...). */
const NOT_SECRET = /(?:^|[_-])(?:public|file|path|url|dir|id)(?:$|[_-])/i;

/** `# check=skip=A,B;error=true`, as BuildKit reads it. */
export function checkPolicy(parsed: ParseResult): CheckPolicy {
  const policy: CheckPolicy = { skip: new Set(), error: false };
  const directive = parsed.directives.find((d) => d.name === "check");
  for (const part of (directive?.value ?? "").split(";")) {
    const [key, value = ""] = part.split("=", 2).map((s) => s.trim());
    if (key === "skip") for (const rule of value.split(",")) policy.skip.add(rule.trim() === "all" ? "all" : rule.trim());
    if (key === "error") policy.error = value === "true";
  }
  return policy;
}

export function lintDockerfile(parsed: ParseResult, plan: Plan): Finding[] {
  const file = parsed.file;
  const findings: Finding[] = [];
  const add = (rule: string, line: number, message: string) => findings.push({ rule, message, file, line });
  casing(parsed.children, add);
  stages(parsed.children, add);
  forms(parsed.children, add);
  // FROM lines have their own rule (UndefinedArgInFrom).
  const fromLines = new Set(parsed.children.filter((n) => n.value.toUpperCase() === "FROM").map((n) => n.startLine));
  for (const { name, location } of plan.undefinedVars) if (!fromLines.has(location.line)) add("UndefinedVar", location.line, `Usage of undefined variable '$${name}'${suggestion(name, plan)}`);
  for (const warning of parsed.warnings) if (/empty continuation/.test(warning.message)) add("NoEmptyContinuation", warning.line, "Empty continuation line");
  const policy = checkPolicy(parsed);
  return findings.filter((f) => !policy.skip.has("all") && !policy.skip.has(f.rule)).sort((a, b) => a.line - b.line || a.rule.localeCompare(b.rule));
}

type Add = (rule: string, line: number, message: string) => void;

/** Instructions in one casing (the majority's), and `AS` in FROM's. */
function casing(nodes: Node[], add: Add) {
  const upper = nodes.filter((n) => n.value === n.value.toUpperCase()).length;
  const majority = upper * 2 >= nodes.length ? "uppercase" : "lowercase";
  for (const node of nodes) {
    const isUpper = node.value === node.value.toUpperCase();
    const isLower = node.value === node.value.toLowerCase();
    if ((majority === "uppercase" && !isUpper) || (majority === "lowercase" && !isLower)) {
      add("ConsistentInstructionCasing", node.startLine, `Command '${node.value}' should match the case of the command majority (${majority})`);
    }
    if (node.value.toUpperCase() !== "FROM") continue;
    const as = fromWords(node)[1];
    if (as === undefined) continue;
    const fromUpper = node.value === node.value.toUpperCase();
    if ((fromUpper && as !== as.toUpperCase()) || (!fromUpper && as !== as.toLowerCase())) add("FromAsCasing", node.startLine, `'${as}' and '${node.value}' keywords' casing do not match`);
  }
}

/** FROM's words after its flags: image [AS name]. */
function fromWords(node: Node): [string | undefined, string | undefined, string | undefined] {
  const words: string[] = [];
  for (let arg = node.next; arg; arg = arg.next) words.push(arg.value);
  return [words[0], words[1], words[2]];
}

/** Stage names: lowercase, not a reserved word; FROM's ARGs declared. (A duplicate name is an error of the planner.) */
function stages(nodes: Node[], add: Add) {
  const metaArgs = new Set<string>(["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"]);
  let beforeFrom = true;
  for (const node of nodes) {
    const kind = node.value.toUpperCase();
    if (kind === "ARG" && beforeFrom) for (let arg = node.next; arg; arg = arg.next) metaArgs.add(arg.value.split("=")[0]);
    if (kind !== "FROM") continue;
    beforeFrom = false;
    const [image, as, name] = fromWords(node);
    for (const match of (image ?? "").matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (!metaArgs.has(match[1])) add("UndefinedArgInFrom", node.startLine, `FROM argument '${match[1]}' is not declared`);
    }
    if (as?.toUpperCase() !== "AS" || name === undefined) continue;
    if (name !== name.toLowerCase()) add("StageNameCasing", node.startLine, `Stage name '${name}' should be lowercase`);
    const lower = name.toLowerCase();
    if (lower === "scratch" || lower === "context") add("ReservedStageName", node.startLine, `'${lower}' is reserved and should not be used as a stage name`);
  }
}

/** Per stage: JSON forms, MAINTAINER, secrets in ARG/ENV names, WORKDIR, repeated CMD-likes, legacy ENV. */
function forms(nodes: Node[], add: Add) {
  let counts = new Map<string, Node[]>();
  let absoluteWorkdir = false;
  const endStage = () => {
    for (const [kind, seen] of counts) {
      for (const node of seen.slice(0, -1)) add("MultipleInstructionsDisallowed", node.startLine, `Multiple ${kind} instructions should not be used in the same stage because only the last one will be used`);
    }
    counts = new Map();
    absoluteWorkdir = false;
  };
  for (const node of nodes) {
    const kind = node.value.toUpperCase();
    if (kind === "FROM") endStage();
    if ((kind === "CMD" || kind === "ENTRYPOINT") && !node.attributes.json) add("JSONArgsRecommended", node.startLine, `JSON arguments recommended for ${kind} to prevent unintended behavior related to OS signals`);
    if (kind === "CMD" || kind === "ENTRYPOINT" || kind === "HEALTHCHECK") counts.set(kind, [...(counts.get(kind) ?? []), node]);
    if (kind === "MAINTAINER") add("MaintainerDeprecated", node.startLine, "Maintainer instruction is deprecated in favor of using label");
    if (kind === "ARG" || kind === "ENV") {
      for (const name of declaredNames(node)) {
        if (SECRET_WORDS.test(name) && !NOT_SECRET.test(name)) add("SecretsUsedInArgOrEnv", node.startLine, `Do not use ARG or ENV instructions for sensitive data (${kind} "${name}")`);
      }
    }
    if (kind === "ENV" && isLegacyKeyValue(node)) add("LegacyKeyValueFormat", node.startLine, `"ENV key=value" should be used instead of legacy "ENV key value" format`);
    if (kind === "WORKDIR") {
      const path = node.next?.value ?? "";
      if (path.startsWith("/") || path.startsWith("$")) absoluteWorkdir = true;
      else if (!absoluteWorkdir) add("WorkdirRelativePath", node.startLine, `Relative workdir '${path}' can have unexpected results if the base image changes`);
    }
  }
  endStage();
}

const argsOf = (node: Node) => {
  const args: string[] = [];
  for (let arg = node.next; arg; arg = arg.next) args.push(arg.value);
  return args;
};

/** ENV's parse tree is (name, value, separator) triples; ARG's is NAME[=value] words. */
function declaredNames(node: Node): string[] {
  const args = argsOf(node);
  if (node.value.toUpperCase() === "ARG") return args.map((a) => a.split("=")[0]);
  return args.filter((_, i) => i % 3 === 0);
}

/** `ENV NAME value`: its triple's separator is empty, where `NAME=value` has "=". */
function isLegacyKeyValue(node: Node): boolean {
  return argsOf(node).some((arg, i) => i % 3 === 2 && arg === "");
}

/** A "did you mean" for an undefined name, from the names a stage can see. */
function suggestion(name: string, plan: Plan): string {
  const known = new Set<string>(["PATH", "HOME", "HOSTNAME"]);
  for (const stage of plan.stages) for (const step of stage.steps) for (const [k] of step.runEnv ?? []) known.add(k);
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best && best !== name ? ` (did you mean $${best}?)` : "";
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const kept = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = kept;
    }
  }
  return row[b.length];
}
