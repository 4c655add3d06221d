//! Identifier newtypes: a connection id, a connector id, a tenant GUID and a flow id are all
//! strings on the wire and in the store, and passing one where another is meant (a connector id
//! as a tenant, a flow id as a connection) would type-check as `String`. As distinct types it
//! does not. They serialize exactly as the bare string, so records and API answers are unchanged.

use std::fmt;

use crate::crypto::random_id;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value that already is such an id (read from config, the store, a path or
            /// another trusted source); lookups decide whether it names anything.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as text (for keys, labels and logs).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_string())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Maps keyed by an id can be looked up with the bare text (from a path or a header);
        // the derived `Hash` and `Eq` are the inner string's, as `Borrow` requires.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// A connection's id (`conn_…`), as the API and the store name it.
    ConnectionId
);
id_type!(
    /// A connector's configured id (`[[connectors]] id`).
    ConnectorId
);
id_type!(
    /// A tenant's directory GUID (the id_token's `tid`), never a domain or `organizations`.
    TenantId
);
id_type!(
    /// A browser sign-in attempt's id (`fl_…`), which also names its approval page.
    FlowId
);

impl ConnectionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(random_id("conn"))
    }
}

impl FlowId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(random_id("fl"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_their_bare_string() {
        let id = ConnectionId::new("conn_1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""conn_1""#);
        let back: ConnectionId = serde_json::from_str(r#""conn_1""#).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "conn_1");
    }

    #[test]
    fn generated_ids_carry_their_prefix_and_differ() {
        let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
        assert!(a.as_str().starts_with("conn_") && a != b);
        assert!(FlowId::generate().as_str().starts_with("fl_"));
    }
}
