/** The --blobs URL: what it names, and what is refused with the flag named (credentials above all). */
import { expect, test } from "bun:test";
import { parseS3Url } from "./blobs-s3.ts";

test("s3://BUCKET[/PREFIX]?endpoint=&region= names a bucket, a prefix ending in one slash, an endpoint and a region", () => {
  expect(parseS3Url("s3://cache")).toEqual({ bucket: "cache", prefix: "", endpoint: undefined, region: undefined });
  expect(parseS3Url("s3://cache/team/a/?endpoint=https%3A%2F%2Fs3.example.com&region=eu-west-1")).toEqual({
    bucket: "cache",
    prefix: "team/a/",
    endpoint: "https://s3.example.com",
    region: "eu-west-1",
  });
  expect(parseS3Url("s3://cache/p?endpoint=http://127.0.0.1:9000").endpoint).toBe("http://127.0.0.1:9000");
});

test("credentials in the URL, another scheme, an unknown parameter or an endpoint that is not http(s) are refused", () => {
  expect(() => parseS3Url("s3://AKIA:secret@cache/p")).toThrow("--blobs: credentials never go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  expect(() => parseS3Url("https://cache/p")).toThrow("--blobs https://cache/p: use s3://BUCKET[/PREFIX]?endpoint=URL&region=R");
  expect(() => parseS3Url("not a url")).toThrow("use s3://BUCKET");
  expect(() => parseS3Url("s3://cache?secret=x")).toThrow('unknown parameter "secret" (endpoint, region)');
  expect(() => parseS3Url("s3://cache?endpoint=file:///etc")).toThrow("--blobs: endpoint=file:///etc is not an http(s) URL");
});
