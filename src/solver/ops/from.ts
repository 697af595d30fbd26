/**
 * FROM: the stage starts from scratch, an image (keyed by its manifest digest) or a stage built
 * earlier (keyed by that stage's key). Neither the stage's own name nor how the base is spelled
 * enters the key.
 */
import { cloneConfig, emptyConfig } from "../../image/config.ts";
import { formatPlatform, parsePlatform } from "../../frontend/platform.ts";
import { keyText } from "../keys.ts";
import { imageLayers, type StageState } from "../state.ts";
import type { Operation, StepScope } from "./operation.ts";

export const fromOperation: Operation = async (scope) => {
  checkPlatform(scope);
  const { stage, build } = scope;
  const platform = formatPlatform(build.platform);
  const instruction = keyText(scope.step.instruction);
  const base = stage.base;
  let next: StageState;
  if (base.kind === "stage") {
    const parent = scope.world.stages.get(base.index)!;
    next = { ...parent, configState: { cmdSet: false } };
    return finish({ instruction, platform, fromStage: parent.key }, next);
  }
  if (base.kind === "scratch") {
    next = { key: "", layers: [], config: emptyConfig(build.platform), configState: { cmdSet: false } };
    return finish({ instruction, platform }, next);
  }
  if (scope.world.localContext(base.ref)) {
    scope.fail(`--build-context ${base.ref} is a directory, and FROM needs an image (docker-image://REF or oci-layout://DIR); COPY --from=${base.ref} and RUN --mount from=${base.ref} read a directory`);
  }
  const image = scope.world.image(base.ref) ?? scope.fail(`image ${base.ref} is not in the local image store (pull it with: memobuild image pull ${base.ref}, or import it)`);
  if (image.config.architecture !== build.platform.architecture || image.config.os !== build.platform.os) {
    scope.fail(`image ${base.ref} is for ${image.config.os}/${image.config.architecture}, not ${platform}`);
  }
  const config = cloneConfig(image.config);
  config.history ??= [];
  config.config.OnBuild = null;
  next = { key: "", layers: imageLayers(image), config, configState: { cmdSet: false } };
  return finish({ instruction, platform, base: image.manifestDigest }, next);
};

/** The base's ONBUILD triggers run in this stage (the planner put them first) and are not inherited further. */
function finish(inputs: { instruction: string; platform: string; base?: string; fromStage?: string }, state: StageState) {
  if (!state.config.config.OnBuild?.length) return { inputs, next: state, history: false };
  const config = cloneConfig(state.config);
  config.config.OnBuild = null;
  return { inputs, next: { ...state, config }, history: false };
}

function checkPlatform(scope: StepScope) {
  const { stage, build } = scope;
  if (stage.platform === undefined) return;
  const wanted = parsePlatform(stage.platform);
  if (wanted.os !== build.platform.os || wanted.architecture !== build.platform.architecture) {
    scope.fail(`platform ${stage.platform} is not supported: this machine builds for ${formatPlatform(build.platform)}`);
  }
}
