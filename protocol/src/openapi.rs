//! OpenAPI schemas of the values whose JSON form is text of their own: ids and keys as
//! hex, names and fractions as strings. Everything else derives its schema beside its
//! serde derive, so the document follows the code.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

fn text(description: &str, pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

macro_rules! text_schema {
    ($type:ty, $description:expr, $pattern:expr) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                text($description, $pattern)
            }
        }
        impl utoipa::ToSchema for $type {}
    };
}

text_schema!(crate::ContentId, "a blake3 digest, 64 hex digits", "^[0-9a-f]{64}$");
text_schema!(crate::PublicKey, "an ed25519 public key, 64 hex digits", "^[0-9a-f]{64}$");
text_schema!(crate::Signature, "an ed25519 signature, 128 hex digits", "^[0-9a-f]{128}$");
text_schema!(
    crate::governance::ScopeId,
    "a scope's name: lowercase letters, digits and dashes",
    "^[a-z0-9][a-z0-9-]*$"
);
text_schema!(crate::governance::Fraction, "an exact fraction from 0 to 1", "^[0-9]+/[0-9]+$");
