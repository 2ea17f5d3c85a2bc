//! Connectors: one file in, [`crate::Document`]s out.
