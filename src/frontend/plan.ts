/**
 * The planner: a parsed Dockerfile + build args → stages of typed, expanded instructions, with
 * BuildKit's variable scoping:
 * - ARGs before the first FROM ("meta args") are visible to FROM lines only, unless a stage
 *   redeclares them with `ARG NAME`;
 * - an ARG or ENV inside a stage is visible from that point to the end of the stage, and in
 *   stages built `FROM` that stage;
 * - `--build-arg` overrides the value of a declared ARG; undeclared ones are reported unused;
 * - ENV values go into the image config, ARG values only into the build environment.
 */
import { closest } from "../util/closest.ts";
import { UsageError } from "../errors.ts";
import { DockerfileError, type SourceRange } from "./errors.ts";
import { toInstruction, type Expander, type Instruction } from "./instructions.ts";
import { parseDockerfile, type Directive, type Node, type ParseResult } from "./parser.ts";
import { expand, ExpansionError, type EnvLookup } from "./shell-lex.ts";
import { formatInstruction } from "./format.ts";
import { hostPlatform, type Platform, formatPlatform } from "./platform.ts";

export type StageBase = { kind: "scratch" } | { kind: "image"; ref: string } | { kind: "stage"; index: number };

export interface Step {
  /** `stage/index`: the stage's name (or index when unnamed) and the step's position in it. */
  id: string;
  stage: number;
  index: number;
  instruction: Instruction;
  /** The instruction as expanded, heredoc bodies included. */
  text: string;
  /** Stages this step reads from (COPY --from, RUN --mount from=), by index. */
  reads: number[];
  /** For RUN: the variables in scope (ENV and ARG), as the command's environment. */
  runEnv?: [string, string][];
  /** ARG names whose value this step depends on (expanded into it, or in a RUN's environment). */
  usedArgs: string[];
  /** Set when the step came from a base stage's ONBUILD trigger. */
  trigger?: SourceRange;
  /** ARG: the instruction as written (`text` has the values used in place of defaults). */
  written?: string;
}

export interface Stage {
  index: number;
  name?: string;
  /** The name, or the index as a string: how step ids and `--target` refer to the stage. */
  id: string;
  base: StageBase;
  platform?: string;
  location: SourceRange;
  /** steps[0] is the FROM. */
  steps: Step[];
  /** ONBUILD triggers this stage registers for stages built FROM it. */
  onbuild: string[];
}

export interface Plan {
  file: string;
  syntax?: string;
  escapeToken: string;
  directives: Directive[];
  metaArgs: { name: string; value?: string }[];
  stages: Stage[];
  /** `--build-arg` names that no ARG declared. */
  unusedBuildArgs: string[];
  /** Names expanded as empty in a stage whose base image's config was not known (they may be set there). */
  unknownFromBase: { image: string; name: string; location: SourceRange }[];
  warnings: { message: string; location: SourceRange }[];
  /** Variables an instruction read plainly that nothing defined (where the base's ENV is known): the UndefinedVar check. */
  undefinedVars: { name: string; location: SourceRange }[];
}

/** What the planner may know about a base image (from the image store). */
export interface ImageInfo {
  env: string[];
  onbuild: string[];
}

export interface PlanOptions {
  /** The Dockerfile path as the user named it: it prefixes every error. */
  file?: string;
  buildArgs?: Record<string, string>;
  /** The platform the image is for (TARGETPLATFORM; default: this machine's). */
  platform?: Platform;
  /** The platform the build runs on (BUILDPLATFORM; default: this machine's). */
  buildPlatform?: Platform;
  /** Config of base images, when known; expansion then sees their ENV like BuildKit does. */
  images?: (ref: string, platform?: string) => ImageInfo | undefined;
  /** `--build-context` names (lower case): FROM/--from NAME means the context, even over a stage of that name. */
  namedContexts?: ReadonlySet<string>;
}

/**
 * ARGs BuildKit defines without a declaration (global scope; a stage must `ARG` them): BUILD*
 * the machine the build runs on, TARGET* the platform the image is for (`--platform`), also in
 * a stage whose FROM names another (`FROM --platform=$BUILDPLATFORM` cross-compiles for TARGET*).
 */
function platformArgs(build: Platform, target: Platform): Record<string, string> {
  return {
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? "",
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? "",
  };
}

/** Build args BuildKit reads without an ARG (the build itself uses them, not the Dockerfile). */
const PREDEFINED_ARGS = new Set(["SOURCE_DATE_EPOCH"]);

const SYNTAX_FRONTEND = /^(docker\.io\/)?docker\/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/;

/** Variables as one stage sees them while it is planned. */
class Scope {
  /** Everything expansion sees: ENV and ARG values, in order of assignment. */
  vars = new Map<string, string>();
  /** Names whose current value came from an ARG. */
  argNames = new Set<string>();
  /** The base image, when its config (ENV) is not known: an unset name may really be set there. */
  unknownBase?: string;

  clone(): Scope {
    const copy = new Scope();
    copy.vars = new Map(this.vars);
    copy.argNames = new Set(this.argNames);
    copy.unknownBase = this.unknownBase;
    return copy;
  }
  lookup: EnvLookup = (name) => this.vars.get(name);
}

/** Parses and plans Dockerfile text. Throws DockerfileError with the file, line and column. */
export function planDockerfile(text: string, options: PlanOptions = {}): Plan {
  return plan(parseDockerfile(text, options.file ?? "Dockerfile"), options);
}

/** Plans a parsed Dockerfile. Throws DockerfileError with the file, line and column. */
export function plan(parsed: ParseResult, options: PlanOptions = {}): Plan {
  const file = parsed.file;
  const nodes = parsed.children;
  const buildArgs = options.buildArgs ?? {};
  const platform = options.platform ?? hostPlatform();
  const predefinedArgs = platformArgs(options.buildPlatform ?? hostPlatform(), platform);
  const escapeToken = parsed.escapeToken;
  const warnings: Plan["warnings"] = parsed.warnings.map((w) => ({ message: w.message, location: { file, line: w.line } }));
  const consumedBuildArgs = new Set<string>();

  const syntax = parsed.directives.find((d) => d.name === "syntax");
  if (syntax && !SYNTAX_FRONTEND.test(syntax.value)) {
    throw new DockerfileError(
      `unsupported syntax frontend "${syntax.value}": MemoBuild implements docker/dockerfile only`,
      { file, line: syntax.line },
    );
  }

  /** Expansion within a scope, remembering which ARG-sourced names were looked up. */
  const unknownFromBase: Plan["unknownFromBase"] = [];
  const undefinedVars: Plan["undefinedVars"] = [];
  const expanderFor = (scope: Scope, used: Set<string>, location: () => SourceRange): Expander => {
    const run = (text: string, mode: "word" | "words" | "heredoc") => {
      try {
        const result = expand(text, scope.lookup, { escapeToken, skipQuotes: mode === "heredoc" });
        for (const name of [...result.matched, ...result.unmatched]) if (scope.argNames.has(name)) used.add(name);
        if (scope.unknownBase) for (const name of result.unmatched) unknownFromBase.push({ image: scope.unknownBase, name, location: location() });
        else for (const name of result.undefinedPlain) undefinedVars.push({ name, location: location() });
        return result;
      } catch (error) {
        if (error instanceof ExpansionError) throw new DockerfileError(error.message, location());
        throw error;
      }
    };
    return {
      word: (text) => run(text, "word").word,
      words: (text) => run(text, "words").words,
      heredoc: (text) => run(text, "heredoc").word,
    };
  };

  // Meta args: the ARGs before the first FROM, plus BuildKit's automatic platform args.
  const metaScope = new Scope();
  for (const [name, value] of Object.entries(predefinedArgs)) metaScope.vars.set(name, value);
  const metaArgs: Plan["metaArgs"] = [];
  let position = 0;
  for (; position < nodes.length && nodes[position].value.toUpperCase() !== "FROM"; position++) {
    const node = nodes[position];
    const kind = node.value.toUpperCase();
    if (kind !== "ARG") {
      const instruction = toInstruction(node, file, expanderFor(metaScope, new Set(), () => locate(node, file)));
      throw new DockerfileError(
        `${instruction.kind} is not allowed before the first FROM (only ARG is)`,
        instruction.location,
      );
    }
    const instruction = toInstruction(node, file, expanderFor(metaScope, new Set(), () => locate(node, file)));
    if (instruction.kind !== "ARG") continue;
    for (const arg of instruction.args) {
      let value = arg.value === undefined ? undefined : expanderFor(metaScope, new Set(), () => instruction.location).word(arg.value);
      if (Object.hasOwn(buildArgs, arg.name)) {
        value = buildArgs[arg.name];
        consumedBuildArgs.add(arg.name);
      }
      metaArgs.push({ name: arg.name, value });
      if (value === undefined) metaScope.vars.delete(arg.name);
      else metaScope.vars.set(arg.name, value);
      metaScope.argNames.add(arg.name);
    }
  }
  if (position === nodes.length) {
    throw new DockerfileError("no FROM instruction: a Dockerfile needs at least one stage", {
      file,
      line: nodes[nodes.length - 1]?.endLine ?? 1,
    });
  }

  const stages: Stage[] = [];
  const finalScopes: Scope[] = [];

  const findStage = (reference: string, before: number): number | undefined => {
    const lower = reference.toLowerCase();
    if (options.namedContexts?.has(lower)) return undefined; // the named context wins, as in BuildKit
    const byName = stages.findIndex((s, i) => i < before && s.name === lower);
    if (byName >= 0) return byName;
    if (/^\d+$/.test(reference)) {
      const index = Number(reference);
      if (index < before) return index;
    }
    return undefined;
  };

  let current: { stage: Stage; scope: Scope } | undefined;
  const finishStage = () => {
    if (current) finalScopes[current.stage.index] = current.scope;
  };

  const addStep = (node: Node, stage: Stage, scope: Scope, trigger?: SourceRange) => {
    const used = new Set<string>();
    const instruction = toInstruction(node, file, expanderFor(scope, used, () => locate(node, file)));
    const step: Step = {
      id: `${stage.id}/${stage.steps.length}`,
      stage: stage.index,
      index: stage.steps.length,
      instruction,
      text: "",
      reads: [],
      usedArgs: [],
      trigger,
    };
    if (trigger) instruction.location = trigger;
    switch (instruction.kind) {
      case "ARG":
        step.written = formatInstruction(instruction);
        for (const arg of instruction.args) {
          let value: string | undefined;
          if (Object.hasOwn(buildArgs, arg.name)) {
            value = buildArgs[arg.name];
            consumedBuildArgs.add(arg.name);
          } else if (arg.value !== undefined) {
            value = expanderFor(scope, used, () => instruction.location).word(arg.value);
          } else {
            value = metaScope.vars.get(arg.name);
          }
          arg.value = value;
          if (value !== undefined) {
            scope.vars.set(arg.name, value);
            scope.argNames.add(arg.name);
          } else if (!scope.vars.has(arg.name)) {
            scope.argNames.add(arg.name); // declared, unset: a later --build-arg would change steps using it
          }
        }
        break;
      case "ENV":
        for (const [key, value] of instruction.pairs) {
          scope.vars.set(key, value);
          scope.argNames.delete(key);
        }
        break;
      case "ONBUILD":
        stage.onbuild.push(instruction.trigger);
        break;
      case "RUN":
        step.runEnv = [...scope.vars].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        for (const name of scope.argNames) if (scope.vars.has(name)) used.add(name);
        for (const mount of instruction.mounts) {
          if ((mount.type === "bind" || mount.type === "cache") && mount.from !== undefined) {
            const source = findStage(mount.from, stage.index);
            if (source !== undefined) step.reads.push(source);
            else checkNotLaterStage(mount.from, stage.index, instruction.location);
          }
        }
        break;
      case "COPY":
        if (instruction.from !== undefined) {
          const source = findStage(instruction.from, stage.index);
          if (source !== undefined) step.reads.push(source);
          else checkNotLaterStage(instruction.from, stage.index, instruction.location);
        }
        break;
    }
    step.usedArgs = [...used].sort();
    step.text = formatInstruction(instruction);
    stage.steps.push(step);
  };

  /** `COPY --from=later` and `--from=self` are cycles BuildKit rejects; name them clearly. */
  const checkNotLaterStage = (reference: string, stageIndex: number, location: SourceRange) => {
    const lower = reference.toLowerCase();
    const here = stages[stageIndex];
    if (here.name === lower || reference === String(stageIndex)) {
      throw new DockerfileError(`circular dependency: stage "${here.id}" reads from itself (--from=${reference})`, location);
    }
    const laterIndex = nodes.findIndex((n) => {
      if (n.value.toUpperCase() !== "FROM") return false;
      const args = argsOf(n);
      return args.length === 3 && args[2].toLowerCase() === lower;
    });
    if (laterIndex >= 0 || /^\d+$/.test(reference)) {
      throw new DockerfileError(
        `circular dependency: stage "${here.id}" reads from stage "${reference}", which is not defined before it`,
        location,
      );
    }
    // Otherwise the reference names an image: COPY --from=busybox:latest.
  };

  for (; position < nodes.length; position++) {
    const node = nodes[position];
    if (node.value.toUpperCase() === "FROM") {
      finishStage();
      const index = stages.length;
      const fromInstruction = toInstruction(node, file, expanderFor(metaScope, new Set(), () => locate(node, file)));
      if (fromInstruction.kind !== "FROM") throw new Error("unreachable");
      if (fromInstruction.stageName !== undefined && stages.some((s) => s.name === fromInstruction.stageName)) {
        throw new DockerfileError(`duplicate stage name "${fromInstruction.stageName}"`, fromInstruction.location);
      }
      let base: StageBase;
      let scope: Scope;
      const parent = findStage(fromInstruction.image, index);
      if (fromInstruction.image.toLowerCase() === "scratch") {
        base = { kind: "scratch" };
        scope = new Scope();
      } else if (parent !== undefined) {
        base = { kind: "stage", index: parent };
        scope = finalScopes[parent].clone();
      } else {
        if (fromInstruction.stageName !== undefined && fromInstruction.image.toLowerCase() === fromInstruction.stageName) {
          throw new DockerfileError(
            `circular dependency: stage "${fromInstruction.stageName}" is built FROM itself`,
            fromInstruction.location,
          );
        }
        base = { kind: "image", ref: fromInstruction.image };
        scope = new Scope();
        const info = options.images?.(fromInstruction.image, fromInstruction.platform);
        if (options.images && !info) scope.unknownBase = fromInstruction.image;
        for (const entry of info?.env ?? []) {
          const eq = entry.indexOf("=");
          if (eq > 0) scope.vars.set(entry.slice(0, eq), entry.slice(eq + 1));
        }
      }
      const name = fromInstruction.stageName;
      const stage: Stage = {
        index,
        name,
        id: name ?? String(index),
        base,
        platform: fromInstruction.platform,
        location: fromInstruction.location,
        steps: [],
        onbuild: [],
      };
      stages.push(stage);
      current = { stage, scope };
      stage.steps.push({
        id: `${stage.id}/0`,
        stage: index,
        index: 0,
        instruction: fromInstruction,
        text: formatInstruction(fromInstruction),
        reads: base.kind === "stage" ? [base.index] : [],
        usedArgs: [],
      });
      // ONBUILD triggers of a base stage run first in the stage built FROM it.
      const triggers =
        base.kind === "stage" ? stages[base.index].onbuild : base.kind === "image" ? (options.images?.(base.ref, fromInstruction.platform)?.onbuild ?? []) : [];
      for (const trigger of triggers) {
        const triggerNode = parseDockerfile(trigger, file).children[0];
        triggerNode.startLine = node.startLine;
        triggerNode.endLine = node.endLine;
        triggerNode.sourceLine = node.sourceLine;
        addStep(triggerNode, stage, scope, fromInstruction.location);
      }
      continue;
    }
    addStep(node, current!.stage, current!.scope);
  }
  finishStage();

  const predefined = (name: string) => name in predefinedArgs || PREDEFINED_ARGS.has(name);
  const unusedBuildArgs = Object.keys(buildArgs).filter((name) => !consumedBuildArgs.has(name) && !predefined(name));
  return {
    file,
    syntax: syntax?.value,
    escapeToken,
    directives: parsed.directives,
    metaArgs,
    unknownFromBase,
    stages,
    unusedBuildArgs,
    warnings,
    undefinedVars,
  };
}

function argsOf(node: Node): string[] {
  const values: string[] = [];
  for (let n = node.next; n; n = n.next) values.push(n.value);
  return values;
}

function locate(node: Node, file: string): SourceRange {
  const column = node.sourceLine.search(/\S/) + 1;
  return { file, line: node.startLine, column: Math.max(column, 1), endLine: node.endLine };
}

/** Resolves `--target`: a stage name or index. */
export function targetStage(plan: Plan, target?: string): Stage {
  if (target === undefined) return plan.stages[plan.stages.length - 1];
  const lower = target.toLowerCase();
  const stage = plan.stages.find((s) => s.name === lower) ?? (/^\d+$/.test(target) ? plan.stages[Number(target)] : undefined);
  if (!stage) {
    const names = plan.stages.map((s) => s.id).join(", ");
    const suggestion = closest(lower, plan.stages.flatMap((s) => (s.name ? [s.name] : [])));
    // A flag's value, not a line of the Dockerfile: no line to point at.
    throw new UsageError(`--target ${target}: ${plan.file} has no such stage${suggestion ? ` (did you mean ${suggestion}?)` : ""} (stages: ${names})`);
  }
  return stage;
}
