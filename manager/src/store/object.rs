//! The objects the store holds (defined with the object model, in `shoal_api`).

pub use shoal_api::stored::{Kind, Object};
