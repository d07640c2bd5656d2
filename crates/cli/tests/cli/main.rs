//! End-to-end tests of the `apiwall` binary: the seed procedure, bad input, re-runs,
//! concurrency and golden output. Each test gets its own store under a temporary APIWALL_HOME.

mod support;

mod bad_input;
mod concurrency;
mod gate;
mod golden;
mod lab;
mod lockout;
mod procedure;
mod watcher;
