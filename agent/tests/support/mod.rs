//! Test fixtures for secured NATS servers: JWTs and PKI, generated per test.

pub mod jwt;
pub mod tls;
