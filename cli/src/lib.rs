//! The `icn` command's library: the member's client, the local commons used by the
//! demo, the benchmark and the tests, and the coordinator's config file.

pub mod args;
pub mod bench;
pub mod client;
pub mod config;
pub mod context;
pub mod demo;
pub mod governance;
pub mod local;
pub mod logs;
pub mod spec;
pub mod status;
pub mod ui;
pub mod web;
