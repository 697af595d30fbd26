// Files imported `with { type: "text" }` are their text.
declare module "*.css" {
  const text: string;
  export default text;
}
