//! Reading the file: YAML events into a positioned tree ([`yaml`]), `${VAR}` substitution in its
//! scalar values ([`env`]), and a serde `Deserializer` over the tree that locates every error
//! ([`de`]).

pub(crate) mod de;
pub(crate) mod env;
pub(crate) mod yaml;
