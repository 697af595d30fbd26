/** A stage as the solver carries it from step to step: its key, its layers and its config. */
import { cloneConfig, type ImageConfig, type StageConfigState } from "../image/config.ts";
import type { Descriptor, StoredImage } from "../image/layout.ts";

export interface LayerRef {
  diffId: string;
  descriptor: Descriptor;
}

export interface StageState {
  key: string;
  layers: LayerRef[];
  config: ImageConfig;
  configState: StageConfigState;
}

/** The state a step starts from, copied so the step can change it. */
export function copyState(state: StageState): StageState {
  return { ...state, config: cloneConfig(state.config), layers: [...state.layers], configState: { ...state.configState } };
}

export function imageLayers(image: StoredImage): LayerRef[] {
  return image.manifest.layers.map((descriptor, i) => ({ diffId: image.config.rootfs.diff_ids[i], descriptor }));
}

export const diffIds = (layers: LayerRef[]) => layers.map((l) => l.diffId);
