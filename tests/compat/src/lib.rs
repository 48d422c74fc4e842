//! Wire-compatibility tests live in `tests/`.
