//! Wire format (stub).
