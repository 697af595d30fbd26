/** The interactive Prompter: @clack/prompts on the terminal. */
import * as clack from "@clack/prompts";
import type { Prompter } from "./init.ts";

export class Cancelled extends Error {
  constructor() {
    super("init cancelled; nothing written");
  }
}

function answered<T>(value: T): Exclude<T, symbol> {
  if (clack.isCancel(value)) throw new Cancelled();
  return value as Exclude<T, symbol>;
}

export const clackPrompter: Prompter = {
  select: async (message, choices, initial) => answered(await clack.select({ message, options: choices, initialValue: initial })),
  multiselect: async (message, choices, initial) => answered(await clack.multiselect({ message, options: choices, initialValues: initial, required: false })),
  text: async (message, initial, validate) =>
    answered(await clack.text({ message, initialValue: initial, validate: validate ? (v) => validate(v ?? "") : undefined })),
  secret: async (message) => answered(await clack.password({ message })),
  confirm: async (message, initial) => answered(await clack.confirm({ message, initialValue: initial })),
  warn: (message) => clack.log.warn(message),
};

export const { intro, outro } = clack;
