//! The OpenAPI document: the routes come from [`crate::api_routes`] (each handler's
//! `#[utoipa::path]`); this file adds the info, tags, shared schemas and the bearer scheme.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The native API (`/v1`).
#[derive(OpenApi)]
#[openapi(
    info(title = "contextd", description = "Omnichannel customer context service: native API."),
    components(schemas(
        contextd_proto::ContextObject, contextd_proto::object::Contributor, contextd_proto::object::MediaType,
        contextd_proto::object::DetailType, contextd_proto::object::State, contextd_proto::object::ContributorType,
        contextd_proto::FieldError, contextd_proto::dictionary::EnumValue,
        contextd_proto::dictionary::DataType, contextd_proto::dictionary::Classification,
        contextd_proto::object::Match, contextd_proto::access::Role,
        contextd_proto::Problem,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "objects", description = "Customers, requests, activities and details"),
        (name = "dictionary", description = "Fields and field sets"),
        (name = "access", description = "Users, sessions, API keys, partner grants, audit, erase and export"),
        (name = "connectors", description = "Components, their connectionData and the token endpoint"),
        (name = "webhooks", description = "Receivers of events: registration, delivery attempts, redelivery"),
        (name = "events", description = "The Server-Sent Events stream of changes"),
        (name = "settings", description = "Organization settings: the origins allowed to frame the agent desktop"),
        (name = "system", description = "Health, status, live statistics and this document"),
    )
)]
pub struct ApiDoc;

/// The served document, built once from [`crate::api_routes`] and kept serialized.
pub fn document_json() -> &'static [u8] {
    static DOCUMENT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, document) = crate::api_routes().split_for_parts();
        serde_json::to_vec(&document).unwrap_or_default()
    })
}
