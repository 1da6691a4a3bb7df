#![no_std]
// This file exists so that the crate has a library target (cargo and rust-analyzer want one);
// the program is in main.rs.
