//! The built-in container runtime.

pub mod config;
pub mod logs;
pub mod rootfs;
pub mod seccomp;
pub mod sys;
pub mod user;
