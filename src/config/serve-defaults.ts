/** Where `memobuild serve` listens unless told otherwise; `init` offers the same address, so the two meet. */
export const SERVE_DEFAULT_LISTEN = "127.0.0.1:7070";
