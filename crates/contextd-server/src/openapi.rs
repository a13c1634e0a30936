//! The OpenAPI document, assembled from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{access, dictionary, objects, system};

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
    paths(
        objects::create, objects::get, objects::replace, objects::patch, objects::delete,
        objects::search, objects::timeline, objects::flush, objects::flush_status,
        dictionary::list_fields, dictionary::create_field, dictionary::get_field, dictionary::put_field,
        dictionary::delete_field, dictionary::list_fieldsets, dictionary::create_fieldset,
        dictionary::get_fieldset, dictionary::put_fieldset, dictionary::delete_fieldset,
        access::create_user, access::list_users, access::sign_in, access::sign_out, access::whoami,
        access::update_user, access::delete_user, access::revoke_user_sessions,
        access::create_key, access::list_keys, access::revoke_key, access::create_grant, access::revoke_grant,
        access::audit, access::erase, access::export,
        system::ping, system::healthz, system::status, system::rotate, system::openapi,
    ),
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
        (name = "system", description = "Health, status and this document"),
    )
)]
pub struct ApiDoc;
