//! HTTP handlers, one module per resource. Each extracts, calls one core function, maps the result.

pub mod access;
pub mod connectors;
pub mod dictionary;
pub mod events;
pub mod objects;
pub mod retention;
pub mod settings;
pub mod system;
pub mod webhooks;
