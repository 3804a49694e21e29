//! Live runner (filled below).
