//! One module per guarantee of DESIGN §3 (and per state-transfer invariant of TESTING §2.4). Each states its property in checkable form and
//! exposes the hooks [`crate::Checker`] calls; the shared per-process state lives in the
//! checker.

pub(crate) mod causal;
pub(crate) mod durability;
pub(crate) mod fifo;
pub(crate) mod integrity;
pub(crate) mod liveness;
pub(crate) mod one_history;
pub(crate) mod replica_determinism;
pub(crate) mod safe;
pub(crate) mod self_inclusion;
pub(crate) mod sending_view;
pub(crate) mod state_transfer;
pub(crate) mod total;
pub(crate) mod transfer_atomicity;
pub(crate) mod view_agreement;
pub(crate) mod virtual_synchrony;
