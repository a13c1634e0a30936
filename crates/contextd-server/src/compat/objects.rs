//! `/context/v1/{type}` and `/context/v1/{type}/{id}`: create, read, replace, delete and
//! search, in the original wire shape, through the core's native operations.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use contextd_core::auth::Principal;
use contextd_core::dictionary::Dictionary;
use contextd_core::{ContextObject, CoreError, Kind, ObjectId};
use contextd_proto::compat::query::{
    RawSearchParams, SearchParams, SortBy, SortOrder, MAX_ENTRIES, MAX_WINDOW,
};
use contextd_proto::compat::{
    coerce_value, data_type_name, ref_url, CompatInput, CompatObject, CompatType,
};
use contextd_proto::object::SearchRequest;
use contextd_proto::ErrorCode;

use super::{check_labmode, created, last_updated_header, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::AppState;

/// Results read per native search page while gathering a compatibility page.
const GATHER_PAGE: usize = 200;

fn compat_type(segment: &str) -> ApiResult<CompatType> {
    CompatType::from_str(segment).map_err(|_| ApiError::no_route())
}

fn object_id(id: &str) -> ApiResult<ObjectId> {
    Ok(ObjectId::parse(id)?)
}

/// The original view of `object` read through `ty`, with each field's data type; `parent`
/// is the type of a detail's parent (see [`parent_type`]).
fn view(
    object: &ContextObject,
    ty: CompatType,
    parent: Option<CompatType>,
    dictionary: &Dictionary,
) -> CompatObject {
    CompatObject::from_native(object, ty, parent, |id| {
        dictionary.field(id).map(|f| data_type_name(f.data_type))
    })
}

/// The type of a detail's parent, a request or an activity (an id-only search: no value is
/// read). `None` for other kinds, which [`CompatObject::from_native`] knows by themselves.
async fn parent_type(
    state: &AppState,
    actor: &Principal,
    object: &ContextObject,
) -> ApiResult<Option<CompatType>> {
    let (Kind::Detail, Some(parent)) = (object.kind, object.parent_id) else {
        return Ok(None);
    };
    let request = SearchRequest {
        terms: [("id".to_owned(), serde_json::json!([parent.to_string()]))].into(),
        summary: true,
        ..SearchRequest::default()
    };
    let found = state.context.search(actor, Kind::Request, &request).await?;
    let is_request = found.ids.is_some_and(|ids| !ids.is_empty());
    Ok(Some(if is_request {
        CompatType::Request
    } else {
        CompatType::Activity
    }))
}

/// [`view`] with the parent's type looked up.
async fn full_view(
    state: &AppState,
    actor: &Principal,
    object: &ContextObject,
    ty: CompatType,
    dictionary: &Dictionary,
) -> ApiResult<CompatObject> {
    let parent = parent_type(state, actor, object).await?;
    Ok(view(object, ty, parent, dictionary))
}

/// The native input of a body, values written as text coerced to their field's type (the
/// original clients send `"5"` for an integer).
fn native_input(
    input: CompatInput,
    ty: CompatType,
    dictionary: &Dictionary,
) -> ApiResult<contextd_proto::object::ObjectInput> {
    let mut native = input
        .into_native(ty)
        .map_err(|errors| ApiError::from(CoreError::Validation(errors)))?;
    for (id, value) in native.data.iter_mut() {
        if let Some(field) = dictionary.field(id) {
            *value = coerce_value(field.data_type, std::mem::take(value));
        }
    }
    Ok(native)
}

async fn dictionary(state: &AppState, actor: &Principal) -> ApiResult<Arc<Dictionary>> {
    Ok(state.context.dictionary(actor.scope.org).await?)
}

/// Reads an object that `ty` names (a `workitem` path reads work items only).
async fn read(
    state: &AppState,
    actor: &Principal,
    ty: CompatType,
    id: ObjectId,
) -> ApiResult<ContextObject> {
    let object = state.context.get(actor, ty.native_kind(), id).await?;
    if !ty.matches(object.kind, &object.fieldsets) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no {} with id {id}", ty.as_str()),
        ));
    }
    Ok(object)
}

/// `POST /context/v1/{type}`: 201 with the object, `Location` (absolute) and `Last-Updated`.
pub async fn create(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CompatInput>,
) -> ApiResult<Response> {
    let ty = compat_type(&segment)?;
    check_labmode(&headers, &actor)?;
    let dictionary = dictionary(&state, &actor).await?;
    let native = native_input(input, ty, &dictionary)?;
    let object = state
        .context
        .create(&actor, ty.native_kind(), native)
        .await?;
    let body = full_view(&state, &actor, &object, ty, &dictionary).await?;
    let mut response = created(&state, &ref_url(ty, object.id), &body);
    if let Some(v) = last_updated_header(&object.last_updated) {
        response.headers_mut().insert("last-updated", v);
    }
    Ok(response)
}

/// `GET /context/v1/{type}/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ty = compat_type(&segment)?;
    check_labmode(&headers, &actor)?;
    let object = read(&state, &actor, ty, object_id(&id)?).await?;
    let dictionary = dictionary(&state, &actor).await?;
    let body = full_view(&state, &actor, &object, ty, &dictionary).await?;
    Ok(ok(StatusCode::OK, &body))
}

/// `PUT /context/v1/{type}/{id}`: the whole object, `lastUpdated` as the concurrency token
/// (a stale one: 409). Read-only and unknown top-level keys are ignored.
pub async fn replace(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CompatInput>,
) -> ApiResult<Response> {
    let ty = compat_type(&segment)?;
    check_labmode(&headers, &actor)?;
    let id = object_id(&id)?;
    let token = input
        .last_updated()
        .map_err(|e| ApiError::from(CoreError::Validation(vec![e])))?;
    let stored = read(&state, &actor, ty, id).await?;
    if token.is_some_and(|t| t != stored.last_updated) {
        return Err(CoreError::VersionConflict {
            current: stored.version,
        }
        .into());
    }
    let dictionary = dictionary(&state, &actor).await?;
    let mut native = native_input(input, ty, &dictionary)?;
    // The version read: the core refuses the write if another landed since.
    native.version = Some(stored.version);
    let object = state
        .context
        .replace(&actor, ty.native_kind(), id, native, None)
        .await?;
    let body = full_view(&state, &actor, &object, ty, &dictionary).await?;
    let mut response = ok(StatusCode::OK, &body);
    if let Some(v) = last_updated_header(&object.last_updated) {
        response.headers_mut().insert("last-updated", v);
    }
    Ok(response)
}

/// `DELETE /context/v1/{type}/{id}`: that object alone (lab only).
pub async fn delete(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let ty = compat_type(&segment)?;
    check_labmode(&headers, &actor)?;
    let id = object_id(&id)?;
    read(&state, &actor, ty, id).await?;
    state.context.delete(&actor, ty.native_kind(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /context/v1/{type}?q=…&startIndex=&maxEntries=&sortedBy=&sortOrder=`: a JSON array.
pub async fn search(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(raw): ApiQuery<RawSearchParams>,
) -> ApiResult<Response> {
    let ty = compat_type(&segment)?;
    check_labmode(&headers, &actor)?;
    let params = SearchParams::new(&raw, MAX_ENTRIES)
        .map_err(|errors| ApiError::from(CoreError::Validation(errors)))?;
    if let Some(named) = params.query.type_filter() {
        if !named.same_as(ty) && named.native_kind() != ty.native_kind() {
            return Err(ApiError::bad_request(format!(
                "q names type {} but the path searches {}",
                named.as_str(),
                ty.as_str()
            )));
        }
    }
    let items = gather(&state, &actor, ty, &params).await?;
    let dictionary = dictionary(&state, &actor).await?;
    let mut page = Vec::new();
    for object in params.arrange(items) {
        page.push(full_view(&state, &actor, &object, ty, &dictionary).await?);
    }
    Ok(ok(StatusCode::OK, &page))
}

/// The objects of `ty` the query finds, enough for the page: in the native order (newest
/// `lastUpdated` first) the first `startIndex + maxEntries` do; another order needs them
/// all, up to [`MAX_WINDOW`].
async fn gather(
    state: &AppState,
    actor: &Principal,
    ty: CompatType,
    params: &SearchParams,
) -> ApiResult<Vec<ContextObject>> {
    let native_order =
        params.sorted_by == SortBy::LastUpdated && params.sort_order == SortOrder::Desc;
    let wanted = if native_order {
        params.window()
    } else {
        MAX_WINDOW
    };
    let mut request = params.query.to_search(GATHER_PAGE);
    let mut found = Vec::new();
    loop {
        let page = state
            .context
            .search(actor, ty.native_kind(), &request)
            .await?;
        found.extend(
            page.items
                .unwrap_or_default()
                .into_iter()
                .filter(|o| ty.matches(o.kind, &o.fieldsets)),
        );
        match page.next_cursor {
            Some(cursor) if found.len() < wanted => request.cursor = Some(cursor),
            Some(_) if !native_order => {
                return Err(ApiError::bad_request(format!(
                    "more than {MAX_WINDOW} results to sort: narrow q, or sort by lastUpdated desc"
                )))
            }
            _ => return Ok(found),
        }
    }
}
