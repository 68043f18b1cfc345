//! Node binding for glimpse-core.
