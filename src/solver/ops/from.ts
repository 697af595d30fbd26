/**
 * FROM: the stage starts from scratch, an image (keyed by its manifest digest) or a stage built
 * earlier (keyed by that stage's key). Neither the stage's own name nor how the base is spelled
 * enters the key. The stage's platform (`--platform`, else the build's target; the solver puts it
 * in `build.platform`) picks the image of a multi-platform base and keys every step of the stage.
 */
import { cloneConfig, emptyConfig } from "../../image/config.ts";
import { formatPlatform } from "../../frontend/platform.ts";
import { keyText } from "../keys.ts";
import type { Instruction } from "../../frontend/instructions.ts";
import { imageLayers, type StageState } from "../state.ts";

type BaseState = Omit<StageState, "key">;
import type { Operation, StepScope } from "./operation.ts";

export const fromOperation: Operation<Extract<Instruction, { kind: "FROM" }>> = async (scope, instruction) => {
  checkPlatform(scope);
  const { stage, build } = scope;
  const platform = formatPlatform(build.platform);
  const text = keyText(instruction);
  const base = stage.base;
  let next: BaseState;
  if (base.kind === "stage") {
    const parent = scope.world.stages.get(base.index)!;
    // Stryker disable next-line ObjectLiteral: an absent cmdSet reads as false
    next = { layers: parent.layers, config: parent.config, configState: { cmdSet: false } };
    return finish({ instruction: text, platform, fromStage: parent.key }, next);
  }
  if (base.kind === "scratch") {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: scratch has no CMD for an ENTRYPOINT to drop
    next = { layers: [], config: emptyConfig(build.platform), configState: { cmdSet: false } };
    return finish({ instruction: text, platform }, next);
  }
  if (scope.world.localContext(base.ref)) {
    scope.fail(`--build-context ${base.ref} is a directory, and FROM needs an image (docker-image://REF or oci-layout://DIR); COPY --from=${base.ref} and RUN --mount from=${base.ref} read a directory`);
  }
  const image = scope.world.image(base.ref, build.platform) ?? scope.fail(notStored(scope, base.ref));
  if (image.config.architecture !== build.platform.architecture || image.config.os !== build.platform.os) {
    scope.fail(`image ${base.ref} is for ${image.config.os}/${image.config.architecture}, not ${platform}`);
  }
  const config = cloneConfig(image.config);
  config.history ??= [];
  config.config.OnBuild = null;
  // Stryker disable next-line ObjectLiteral: an absent cmdSet reads as false
  next = { layers: imageLayers(image), config, configState: { cmdSet: false } };
  return finish({ instruction: text, platform, base: image.manifestDigest }, next);
};

/** The base's ONBUILD triggers run in this stage (the planner put them first) and are not inherited further. */
function finish(inputs: { instruction: string; platform: string; base?: string; fromStage?: string }, state: BaseState) {
  if (!state.config.config.OnBuild?.length) return { inputs, next: state, history: false };
  const config = cloneConfig(state.config);
  config.config.OnBuild = null;
  return { inputs, next: { ...state, config }, history: false };
}

/** Images are built for Linux (RUN needs its kernel); another architecture runs emulated. */
function checkPlatform(scope: StepScope) {
  const { build } = scope;
  if (build.platform.os !== "linux") scope.fail(`platform ${formatPlatform(build.platform)} is not supported: MemoBuild builds Linux images`);
}

/** Why a base is missing, and the local image a typo of it may have meant. */
function notStored(scope: StepScope, ref: string): string {
  const hint = scope.world.similarImage(ref);
  return `image ${ref} is not in the local image store (${hint ? `did you mean ${hint} (local)? Else pull` : "pull"} it with: memobuild image pull ${ref}, or import it)`;
}
