//! Integration tests of the HTTP server: a real server on port 0, real SQLite files, real HTTP.

mod support;

mod concurrency;
mod isolation;
mod journey;
mod privacy;
