//! Root tests.
