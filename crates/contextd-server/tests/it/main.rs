//! Integration tests of the HTTP server: a real server on port 0, real SQLite files, real HTTP.

mod support;

mod access;
mod audit;
mod batch;
mod browser;
mod compat;
mod concurrency;
mod connections;
mod connectors;
mod consistency;
mod dictionary;
mod encryption;
mod events;
mod hostile;
mod http;
mod isolation;
mod journey;
mod key_management;
mod metrics;
mod nats;
mod privacy;
mod reads;
mod registration_flow;
mod retention;
mod sdk_connection;
mod search;
mod signin;
mod tls;
mod users;
mod validation;
mod web;
mod webhooks;
