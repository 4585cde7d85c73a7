//! Allocation tests.
