/** Which addresses keep a connection on this machine: every spelling of the loopback, and nothing else. */
import { expect, test } from "bun:test";
import { isLoopbackAddress } from "./loopback-guard.ts";

test("the loopback in every spelling is the loopback", () => {
  for (const address of ["127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "::1", "[::1]", "::", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:7F00:0001", "::127.0.0.1", "::ffff:0.0.0.0", "::1%lo"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, true]);
  }
});

test("any other address, and anything that is no address, is not", () => {
  for (const address of ["192.0.2.2", "10.0.2.2", "128.0.0.1", "1.127.0.0", "::2", "fe80::1", "::ffff:192.0.2.2", "::ffff:8.8.8.8", "2001:db8::127.0.0.1", "64:ff9b::7f00:1", "localhost", "", "127.0.0.1.example"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, false]);
  }
});
