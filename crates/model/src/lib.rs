//! apiwall's resource model: the resources an operator manages with the CLI, in the JSON shape
//! `az` prints them (camelCase, `id`, `name`, `resourceGroup`, `type`, `provisioningState`), and
//! the parsers for Azure's address, port and protocol formats.
//!
//! Pure: no I/O, no clock, no randomness. Every value here is valid by construction: parsers
//! return typed values, and the types serialize back to the exact strings az shows.

pub mod error;
pub mod ids;
pub mod name;
pub mod net;
pub mod resources;
pub mod world;

pub use error::{ModelError, ParseError};
pub use net::{AddressEntry, AuthorizedRanges, Cidr, PortEntry, PrivateRange, Protocol};
pub use resources::*;
pub use world::{Key, Resource, Table, World};
