//! The serving side's policies, public for the simulator (`services/sim`): super-seeding
//! ("least served first", `http::seeding`), who gets an upload slot (`transfer::choker`) and
//! the credit it is ranked by (`transfer::ledger`). Each is pure with time passed in; the HTTP
//! handlers (`http::blobs`) and `transfer::slots` wrap them in sockets and tasks.

pub use crate::http::seeding::Seeding;
pub use crate::transfer::choker::{
    Arrival, Class, QUEUE_WAIT, Slots, WAITING_PER_SLOT, admit_now, arrive, newcomer_rate, next,
    paced,
};
pub use crate::transfer::ledger::{HALF_LIFE, Ledger, Standing};
