//! `/dictionary/{field,fieldset}/v1`: the original dictionary paths, on the organization's
//! native dictionary (admin tokens, as the original console used).

use std::str::FromStr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use contextd_core::CoreError;
use contextd_proto::compat::dictionary::{
    dictionary_ref_url, CompatField, CompatFieldInput, CompatFieldSet, CompatFieldSetInput,
    DictEntity, InUseStatus,
};
use contextd_proto::compat::query::{RawSearchParams, SearchParams, DICTIONARY_MAX_ENTRIES};
use contextd_proto::dictionary::{Field, FieldSet};

use super::{check_labmode, created, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, ApiPath, ApiQuery, Auth};
use crate::AppState;

fn entity(segment: &str) -> ApiResult<DictEntity> {
    DictEntity::from_str(segment).map_err(|_| ApiError::no_route())
}

fn invalid(errors: Vec<contextd_proto::FieldError>) -> ApiError {
    CoreError::Validation(errors).into()
}

/// The `lastUpdated` of the built-in entries, which have no write time: when this server
/// first answered for them.
fn built_in_since() -> DateTime<Utc> {
    static SINCE: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *SINCE.get_or_init(Utc::now)
}

fn field_view(field: Field) -> CompatField {
    CompatField::new(field, built_in_since())
}

fn fieldset_view(set: FieldSet) -> CompatFieldSet {
    CompatFieldSet::new(set, built_in_since())
}

/// A field body as the console sent it, as a native field (`path_id`: the id of a `PUT`).
fn field_body(state: &AppState, body: &[u8], path_id: Option<&str>) -> ApiResult<Field> {
    let input: CompatFieldInput = parse_json(body, state.limits.json_depth)?;
    input.into_native(path_id).map_err(invalid)
}

/// A field set body as the console sent it, as a native field set.
fn fieldset_body(state: &AppState, body: &[u8], path_id: Option<&str>) -> ApiResult<FieldSet> {
    let input: CompatFieldSetInput = parse_json(body, state.limits.json_depth)?;
    input.into_native(path_id).map_err(invalid)
}

/// `POST /dictionary/{entity}/v1`: 201 with the entry and its absolute `Location`.
pub async fn create(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let entity = entity(&segment)?;
    check_labmode(&headers, &actor)?;
    Ok(match entity {
        DictEntity::Field => {
            let field = field_body(&state, &body, None)?;
            let field = state.context.put_field(&actor, field, None).await?;
            let url = dictionary_ref_url(entity, &field.id);
            created(&state, &url, &field_view(field))
        }
        DictEntity::Fieldset => {
            let set = fieldset_body(&state, &body, None)?;
            let set = state.context.put_fieldset(&actor, set, None).await?;
            let url = dictionary_ref_url(entity, &set.id);
            created(&state, &url, &fieldset_view(set))
        }
    })
}

/// `GET /dictionary/{entity}/v1/id/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_labmode(&headers, &actor)?;
    Ok(match entity(&segment)? {
        DictEntity::Field => ok(
            StatusCode::OK,
            &field_view(state.context.get_field(&actor, &id).await?),
        ),
        DictEntity::Fieldset => ok(
            StatusCode::OK,
            &fieldset_view(state.context.get_fieldset(&actor, &id).await?),
        ),
    })
}

/// `PUT /dictionary/{entity}/v1/id/{id}`: the console's extra keys are accepted and ignored.
pub async fn replace(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    check_labmode(&headers, &actor)?;
    Ok(match entity(&segment)? {
        DictEntity::Field => {
            let field = field_body(&state, &body, Some(&id))?;
            let field = state.context.put_field(&actor, field, Some(&id)).await?;
            ok(StatusCode::OK, &field_view(field))
        }
        DictEntity::Fieldset => {
            let set = fieldset_body(&state, &body, Some(&id))?;
            let set = state.context.put_fieldset(&actor, set, Some(&id)).await?;
            ok(StatusCode::OK, &fieldset_view(set))
        }
    })
}

/// `DELETE /dictionary/{entity}/v1/id/{id}`: an unused custom entry.
pub async fn delete(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    check_labmode(&headers, &actor)?;
    match entity(&segment)? {
        DictEntity::Field => state.context.delete_field(&actor, &id).await?,
        DictEntity::Fieldset => state.context.delete_fieldset(&actor, &id).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /dictionary/{entity}/v1/status/{id}` → `{"status": {"inUse": bool}}`.
pub async fn status(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_labmode(&headers, &actor)?;
    let in_use = match entity(&segment)? {
        DictEntity::Field => state.context.field_in_use(&actor, &id).await?,
        DictEntity::Fieldset => state.context.fieldset_in_use(&actor, &id).await?,
    };
    Ok(ok(StatusCode::OK, &InUseStatus::new(in_use)))
}

/// `GET /dictionary/{entity}/v1/search?q=id:*` (or `id:a OR id:b`): a JSON array, sorted by
/// id, up to 1,500 entries a page.
pub async fn search(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(raw): ApiQuery<RawSearchParams>,
) -> ApiResult<Response> {
    check_labmode(&headers, &actor)?;
    let params = SearchParams::new(&raw, DICTIONARY_MAX_ENTRIES).map_err(invalid)?;
    let wanted = params
        .query
        .id_filter()
        .map_err(|e| ApiError::bad_request(e.0))?;
    Ok(match entity(&segment)? {
        DictEntity::Field => {
            let mut fields = state.context.list_fields(&actor).await?;
            fields.retain(|f| wanted.matches(&f.id));
            fields.sort_by(|a, b| a.id.cmp(&b.id));
            let page: Vec<CompatField> = params.page(fields).into_iter().map(field_view).collect();
            ok(StatusCode::OK, &page)
        }
        DictEntity::Fieldset => {
            let mut sets = state.context.list_fieldsets(&actor).await?;
            sets.retain(|s| wanted.matches(&s.id));
            sets.sort_by(|a, b| a.id.cmp(&b.id));
            let page: Vec<CompatFieldSet> =
                params.page(sets).into_iter().map(fieldset_view).collect();
            ok(StatusCode::OK, &page)
        }
    })
}
