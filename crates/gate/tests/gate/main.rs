//! Integration tests of the gate, on loopback. Every simulated client binds its own 127.0.0.x
//! source address; every wait has a deadline.

mod support;

mod accept;
mod haproxy;
mod kubectl;
mod relay;
mod store;
