//! Everything about talking to Microsoft Entra ID: the HTTP client for its endpoints, its error
//! shapes and their classification, and id_token validation against its signing keys.

pub mod aadsts;
pub mod client;
pub mod credential;
pub mod errors;
pub mod explain;
mod extract;
pub mod id_token;
mod render;
pub mod resilience;
pub mod tenants;
pub mod wording;

pub use client::{EntraClient, TokenError, TokenResponse};
pub use credential::{ClientCertificate, ClientCredential};
pub use errors::{Category, Classification, EntraError, classify};
