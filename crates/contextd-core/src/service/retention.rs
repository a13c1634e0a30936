//! Retention: an organization's rules of how long its closed requests, activities and
//! details are kept (both partitions), and the job that deletes what they let go — the one
//! delete production allows besides the privacy erase. Each page deleted is one write with
//! an `object.deleted` event per object, and one `retention.delete` audit entry naming the
//! rule, the count and the ids (never values).
//!
//! A rule selects by kind, channel (activities) and field set. When several select an
//! object, any rule that keeps forever keeps it; otherwise the shortest period applies,
//! counted from the object's `lastUpdated`. That is the union, over the rules with a period,
//! of what each selects past its period, less what a keep-forever rule selects: one
//! [`ExpirySelector`] per rule and kind, each carrying the keep-forever exceptions, which the
//! store answers page by page. Requests still active are never deleted; customers never
//! (they leave through erasure, which also destroys their key).

use std::fmt;

use chrono::Duration;
use contextd_proto::retention::{
    RetentionRule, RetentionRules, MAX_RETENTION_DAYS, MAX_RETENTION_RULES,
};

use super::*;
use crate::store::{system_contributor, ExpirySelector, Kept};

/// The setting's name in the store (organization-wide, like the dictionary).
const RETENTION: &str = "retention";
/// Most objects found and deleted in one write.
pub const RETENTION_PAGE: usize = 500;
/// The kinds retention deletes: every kind but customers.
const KINDS: [Kind; 3] = [Kind::Request, Kind::Activity, Kind::Detail];

/// How long a rule keeps what it selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// This many days after the object's last update.
    Days(u32),
    /// Forever, whatever other rules say.
    Forever,
}

/// A retention rule, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// One kind, or (`None`) requests, activities and details.
    kind: Option<Kind>,
    /// Only activities of this channel (the kind is then `activity`).
    media_type: Option<MediaType>,
    /// Only objects carrying this field set.
    fieldset: Option<String>,
    /// For how long.
    keep: Keep,
}

impl Rule {
    fn applies_to(&self, kind: Kind) -> bool {
        kind != Kind::Customer && self.kind.is_none_or(|k| k == kind)
    }

    /// The rule as stored and answered: canonical names.
    fn to_wire(&self) -> RetentionRule {
        RetentionRule {
            kind: self.kind.map(|k| k.as_str().to_owned()),
            media_type: self.media_type.map(|m| m.as_str().to_owned()),
            fieldset: self.fieldset.clone(),
            after_days: match self.keep {
                Keep::Days(d) => Some(i64::from(d)),
                Keep::Forever => None,
            },
            never: self.keep == Keep::Forever,
        }
    }
}

/// `activity mediaType=web afterDays=90`, for the audit log and the logs.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        parts.push(self.kind.map_or("any kind", Kind::as_str).to_owned());
        if let Some(m) = self.media_type {
            parts.push(format!("mediaType={m}"));
        }
        if let Some(s) = &self.fieldset {
            parts.push(format!("fieldset={s}"));
        }
        parts.push(match self.keep {
            Keep::Days(d) => format!("afterDays={d}"),
            Keep::Forever => "never".to_owned(),
        });
        f.write_str(&parts.join(" "))
    }
}

/// What one run of the retention job deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Objects deleted, per org and partition that deleted any, in the order worked.
    pub deleted: Vec<(Scope, u64)>,
    /// Org and partitions whose work stopped on an error (the others went on), with it.
    pub failed: Vec<(Scope, String)>,
}

impl RetentionReport {
    /// Objects deleted in all.
    pub fn total(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

impl Context {
    /// The organization's retention rules (admin of either partition).
    pub async fn retention(&self, actor: &Principal) -> Result<RetentionRules, CoreError> {
        actor.require(&[Role::Admin])?;
        match self.store.org_setting(actor.scope.org, RETENTION).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|_| CoreError::Store(StoreError::corrupt("retention setting"))),
            None => Ok(RetentionRules::default()),
        }
    }

    /// Replaces the organization's retention rules (audited `retention.set`); answers them
    /// as stored. Only a production admin may: the rules delete production data too, and a
    /// lab credential can't break production.
    pub async fn set_retention(
        &self,
        actor: &Principal,
        rules: RetentionRules,
    ) -> Result<RetentionRules, CoreError> {
        actor.require(&[Role::Admin])?;
        if actor.scope.partition != Partition::Production {
            return Err(CoreError::Forbidden(
                "retention rules delete production data too: only an admin of the production \
                 partition may change them"
                    .into(),
            ));
        }
        let dictionary = self.dictionary(actor.scope.org).await?;
        let checked = check_rules(&rules, Some(&*dictionary)).map_err(CoreError::Validation)?;
        let stored = RetentionRules {
            rules: checked.iter().map(Rule::to_wire).collect(),
        };
        let value = serde_json::to_string(&stored)
            .map_err(|_| CoreError::Store(StoreError::corrupt("retention setting")))?;
        self.store
            .put_org_setting(actor.scope.org, RETENTION, &value, now_ms())
            .await?;
        let described: Vec<String> = checked
            .iter()
            .enumerate()
            .map(|(i, r)| format!("rules[{i}]: {r}"))
            .collect();
        self.audit_action(
            Some(actor),
            actor.scope,
            "retention.set",
            None,
            vec![],
            if described.is_empty() {
                "no rules".to_owned()
            } else {
                described.join("; ")
            },
        )
        .await?;
        Ok(stored)
    }

    /// Deletes, in every organization with retention rules and in both of its partitions,
    /// the objects the rules let go by `now` (the job's clock: tests pass a time of their
    /// choosing). A partition whose work fails is reported and the others go on; an audit
    /// log that can't record stops the whole run (nothing more is deleted unaudited).
    pub async fn apply_retention(&self, now: DateTime<Utc>) -> Result<RetentionReport, CoreError> {
        let now = crate::time::from_millis(now.timestamp_millis());
        let mut report = RetentionReport::default();
        for (org, text) in self.store.org_settings_named(RETENTION).await? {
            let rules = match stored_rules(&text) {
                Ok(rules) => rules,
                Err(why) => {
                    tracing::warn!(%org, error = %why, "unreadable retention rules: nothing of the organization is deleted");
                    continue;
                }
            };
            if !rules.iter().any(|r| matches!(r.keep, Keep::Days(_))) {
                continue;
            }
            for partition in Partition::ALL {
                let scope = Scope { org, partition };
                let mut deleted = 0;
                let result = self.expire(scope, &rules, now, &mut deleted).await;
                if deleted > 0 {
                    report.deleted.push((scope, deleted));
                }
                match result {
                    Ok(()) => {}
                    Err(e @ CoreError::AuditUnavailable(_)) => return Err(e),
                    Err(e) => report.failed.push((scope, e.to_string())),
                }
            }
        }
        Ok(report)
    }

    /// Deletes what `rules` let go in one scope by `now`, page by page, counting into
    /// `deleted`.
    async fn expire(
        &self,
        scope: Scope,
        rules: &[Rule],
        now: DateTime<Utc>,
        deleted: &mut u64,
    ) -> Result<(), CoreError> {
        let by = system_contributor();
        for kind in KINDS {
            for (index, selector) in selectors(rules, kind, now) {
                let mut after = None;
                loop {
                    let page = self
                        .store
                        .expired(scope, &selector, after, RETENTION_PAGE)
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = Some(*last);
                    let ids: Vec<ObjectId> = page.iter().map(|p| p.id).collect();
                    // Audited before the delete, as writes are: a delete can't be undone, so
                    // an entry that could not be recorded stops it.
                    self.audit_action(
                        None,
                        scope,
                        "retention.delete",
                        None,
                        vec![],
                        page_detail(index, &rules[index], &selector, &ids),
                    )
                    .await?;
                    let gone = self
                        .store
                        .delete_expired(scope, &ids, selector.updated_before, &by)
                        .await?;
                    *deleted += gone.len() as u64;
                    if page.len() < RETENTION_PAGE {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The audit detail of one page about to be deleted: the rule, the count, the cutoff and the
/// ids (an object written since it was found is kept, though listed).
fn page_detail(index: usize, rule: &Rule, selector: &ExpirySelector, ids: &[ObjectId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    format!(
        "rules[{index}] ({rule}): deleting {} {} objects last updated before {}: {}",
        ids.len(),
        selector.kind,
        crate::time::format(&selector.updated_before),
        ids.join(" ")
    )
}

/// The stored rules of an organization, checked again (a field set deleted since is no
/// error: its rule selects nothing).
fn stored_rules(text: &str) -> Result<Vec<Rule>, String> {
    let wire: RetentionRules = serde_json::from_str(text).map_err(|e| e.to_string())?;
    check_rules(&wire, None).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Checks every rule, naming each wrong value by its place (`rules[2].afterDays`); with a
/// dictionary, also that each field set named is in it.
fn check_rules(
    wire: &RetentionRules,
    dictionary: Option<&Dictionary>,
) -> Result<Vec<Rule>, Vec<FieldError>> {
    if wire.rules.len() > MAX_RETENTION_RULES {
        return Err(vec![FieldError::new(
            "rules",
            format!("at most {MAX_RETENTION_RULES} rules"),
        )]);
    }
    let mut errors = Vec::new();
    let mut rules = Vec::with_capacity(wire.rules.len());
    for (i, rule) in wire.rules.iter().enumerate() {
        if let Some(rule) = check_rule(i, rule, dictionary, &mut errors) {
            rules.push(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn check_rule(
    i: usize,
    rule: &RetentionRule,
    dictionary: Option<&Dictionary>,
    errors: &mut Vec<FieldError>,
) -> Option<Rule> {
    let before = errors.len();
    let at = |member: &str| format!("rules[{i}].{member}");
    let mut kind = match rule.kind.as_deref().map(str::trim) {
        None => None,
        Some(text) => match Kind::from_path(text) {
            Some(Kind::Customer) => {
                errors.push(FieldError::new(
                    at("kind"),
                    "retention never deletes customers: a customer leaves through \
                     POST /v1/customers/{id}/erase, which removes everything linked to it \
                     and destroys its key",
                ));
                None
            }
            Some(k) => Some(k),
            None => {
                errors.push(FieldError::new(
                    at("kind"),
                    format!(
                        "'{}' is not a kind retention deletes: request, activity or detail",
                        truncate(text, 32)
                    ),
                ));
                None
            }
        },
    };
    let media_type = parse_opt::<MediaType>(&at("mediaType"), rule.media_type.as_deref(), errors);
    if media_type.is_some() {
        match kind {
            None if rule.kind.is_none() => kind = Some(Kind::Activity),
            Some(Kind::Activity) | None => {}
            Some(_) => errors.push(FieldError::new(
                at("mediaType"),
                "only activities have a mediaType",
            )),
        }
    }
    let fieldset = rule.fieldset.as_deref().map(str::trim).map(str::to_owned);
    if let Some(id) = &fieldset {
        if id.is_empty() {
            errors.push(FieldError::new(at("fieldset"), "empty"));
        } else if dictionary.is_some_and(|d| d.fieldset(id).is_none()) {
            errors.push(FieldError::new(
                at("fieldset"),
                format!("no field set '{}' in the dictionary", truncate(id, 64)),
            ));
        }
    }
    if rule.kind.is_none() && rule.media_type.is_none() && fieldset.is_none() {
        errors.push(FieldError::new(
            format!("rules[{i}]"),
            "a rule names a kind, a field set, or both",
        ));
    }
    let keep = match (rule.after_days, rule.never) {
        (Some(_), true) => {
            errors.push(FieldError::new(
                at("never"),
                "a rule either deletes after afterDays or never: not both",
            ));
            None
        }
        (Some(days), false) => match u32::try_from(days) {
            Ok(d) if (1..=MAX_RETENTION_DAYS).contains(&days) => Some(Keep::Days(d)),
            _ => {
                errors.push(FieldError::new(
                    at("afterDays"),
                    format!("a whole number of days from 1 to {MAX_RETENTION_DAYS}"),
                ));
                None
            }
        },
        (None, true) => Some(Keep::Forever),
        (None, false) => {
            errors.push(FieldError::new(
                at("afterDays"),
                format!("give afterDays (1 to {MAX_RETENTION_DAYS}) or never: true"),
            ));
            None
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(Rule {
        kind,
        media_type,
        fieldset,
        keep: keep?,
    })
}

/// The selectors that find what `rules` let go of `kind` by `now`, each with the index of
/// its rule: one per rule with a period that applies to the kind, each excepting what a
/// keep-forever rule of the kind selects. None when a keep-forever rule takes the whole kind.
fn selectors(rules: &[Rule], kind: Kind, now: DateTime<Utc>) -> Vec<(usize, ExpirySelector)> {
    let keep: Vec<Kept> = rules
        .iter()
        .filter(|r| r.keep == Keep::Forever && r.applies_to(kind))
        .map(|r| Kept {
            media_type: r.media_type,
            fieldset: r.fieldset.clone(),
        })
        .collect();
    if keep
        .iter()
        .any(|k| k.media_type.is_none() && k.fieldset.is_none())
    {
        return Vec::new();
    }
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.applies_to(kind))
        .filter_map(|(i, r)| {
            let Keep::Days(days) = r.keep else {
                return None;
            };
            // Past the start of time nothing is old enough.
            let before = now.checked_sub_signed(Duration::days(i64::from(days)))?;
            Some((
                i,
                ExpirySelector {
                    kind,
                    media_type: r.media_type,
                    fieldset: r.fieldset.clone(),
                    updated_before: crate::time::from_millis(before.timestamp_millis()),
                    only_closed: kind == Kind::Request,
                    keep: keep.clone(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredObject;

    fn wire(rules: serde_json::Value) -> RetentionRules {
        serde_json::from_value(serde_json::json!({ "rules": rules })).expect("rules")
    }

    fn rules(rules: serde_json::Value) -> Vec<Rule> {
        check_rules(&wire(rules), Some(&Dictionary::new(vec![], vec![]))).expect("valid rules")
    }

    fn errors(rules: serde_json::Value) -> Vec<String> {
        match check_rules(&wire(rules), Some(&Dictionary::new(vec![], vec![]))) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    fn now() -> DateTime<Utc> {
        crate::time::from_millis(1_800_000_000_000)
    }

    /// An object of `kind` last updated `days_old` days before [`now`].
    fn object(
        kind: Kind,
        media_type: Option<MediaType>,
        fieldsets: &[&str],
        state: State,
        days_old: i64,
    ) -> StoredObject {
        let t = now() - Duration::days(days_old);
        StoredObject {
            id: ObjectId::new(),
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Production,
            },
            kind,
            customer_id: None,
            parent_id: None,
            state,
            media_type,
            detail_type: None,
            fieldsets: fieldsets.iter().map(|s| (*s).to_owned()).collect(),
            clear: BTreeMap::new(),
            sealed: BTreeMap::new(),
            tags: Vec::new(),
            contributors: Vec::new(),
            created: t,
            last_updated: t,
            touched: t,
            version: 1,
            key_version: 0,
        }
    }

    fn activity(media: MediaType, fieldsets: &[&str], days_old: i64) -> StoredObject {
        object(
            Kind::Activity,
            Some(media),
            fieldsets,
            State::Active,
            days_old,
        )
    }

    /// Whether `rules` let `o` go by [`now`].
    fn expires(rules: &[Rule], o: &StoredObject) -> bool {
        selectors(rules, o.kind, now())
            .iter()
            .any(|(_, s)| s.selects(o))
    }

    #[test]
    fn a_rule_selects_by_kind_channel_and_field_set_after_its_period() {
        let r = rules(serde_json::json!([
            {"kind": "activity", "mediaType": "web", "afterDays": 90},
            {"fieldset": "cisco.base.comment", "afterDays": 30},
        ]));
        assert!(expires(&r, &activity(MediaType::Web, &[], 91)));
        assert!(!expires(&r, &activity(MediaType::Web, &[], 89)));
        assert!(!expires(&r, &activity(MediaType::Voice, &[], 91)));
        let comment = |days| {
            object(
                Kind::Detail,
                None,
                &["cisco.base.comment"],
                State::Closed,
                days,
            )
        };
        assert!(expires(&r, &comment(31)));
        assert!(!expires(&r, &comment(29)));
        assert!(
            !expires(
                &r,
                &object(
                    Kind::Detail,
                    None,
                    &["cisco.base.rating"],
                    State::Closed,
                    400
                )
            ),
            "no rule selects it"
        );
        assert!(
            expires(&r, &activity(MediaType::Voice, &["cisco.base.comment"], 31)),
            "a field-set rule without a kind selects activities too"
        );
        assert!(
            !expires(
                &r,
                &object(
                    Kind::Customer,
                    None,
                    &["cisco.base.comment"],
                    State::Active,
                    400
                )
            ),
            "customers are never deleted by retention"
        );
    }

    #[test]
    fn never_wins_and_otherwise_the_shortest_period_applies() {
        let r = rules(serde_json::json!([
            {"kind": "activity", "afterDays": 365},
            {"kind": "activity", "mediaType": "web", "afterDays": 30},
            {"fieldset": "cisco.base.pod", "never": true},
        ]));
        assert!(
            expires(&r, &activity(MediaType::Web, &[], 31)),
            "the shortest period applies"
        );
        assert!(!expires(&r, &activity(MediaType::Chat, &[], 31)));
        assert!(expires(&r, &activity(MediaType::Chat, &[], 366)));
        assert!(
            !expires(&r, &activity(MediaType::Web, &["cisco.base.pod"], 4000)),
            "a never rule wins over every period"
        );
        let all_details = rules(serde_json::json!([
            {"fieldset": "cisco.base.comment", "afterDays": 1},
            {"kind": "detail", "never": true},
        ]));
        assert!(selectors(&all_details, Kind::Detail, now()).is_empty());
        assert!(!expires(
            &all_details,
            &object(
                Kind::Detail,
                None,
                &["cisco.base.comment"],
                State::Closed,
                10
            )
        ));
        assert!(
            expires(
                &all_details,
                &object(
                    Kind::Request,
                    None,
                    &["cisco.base.comment"],
                    State::Closed,
                    10
                )
            ),
            "a never rule of one kind keeps only that kind"
        );
        let web_never = rules(serde_json::json!([
            {"kind": "activity", "afterDays": 10},
            {"mediaType": "web", "never": true},
        ]));
        assert!(!expires(&web_never, &activity(MediaType::Web, &[], 100)));
        assert!(expires(&web_never, &activity(MediaType::Sms, &[], 100)));
    }

    #[test]
    fn active_requests_are_kept_and_closed_ones_go() {
        let r = rules(serde_json::json!([{"kind": "request", "afterDays": 90}]));
        assert!(!expires(
            &r,
            &object(Kind::Request, None, &[], State::Active, 1000)
        ));
        assert!(expires(
            &r,
            &object(Kind::Request, None, &[], State::Closed, 91)
        ));
        assert!(!expires(
            &r,
            &object(Kind::Request, None, &[], State::Closed, 89)
        ));
    }

    #[test]
    fn wrong_rules_are_named_by_their_place() {
        assert_eq!(
            errors(serde_json::json!([
                {"kind": "activity", "afterDays": 90},
                {"kind": "customer", "afterDays": 90},
                {"kind": "detail", "afterDays": 0},
                {"kind": "detail", "afterDays": 36_501},
                {"kind": "detail"},
                {"kind": "detail", "afterDays": 5, "never": true},
                {"kind": "request", "mediaType": "web", "afterDays": 5},
                {"mediaType": "fax", "afterDays": 5},
                {"fieldset": "no.such.set", "afterDays": 5},
                {"afterDays": 5},
                {"kind": "tickets", "never": true},
            ])),
            [
                "rules[1].kind",
                "rules[2].afterDays",
                "rules[3].afterDays",
                "rules[4].afterDays",
                "rules[5].never",
                "rules[6].mediaType",
                "rules[7].mediaType",
                "rules[8].fieldset",
                "rules[9]",
                "rules[10].kind",
            ]
        );
        let many = serde_json::Value::Array(vec![
            serde_json::json!({"kind": "detail", "never": true});
            MAX_RETENTION_RULES + 1
        ]);
        assert_eq!(errors(many), ["rules"]);
    }

    #[test]
    fn rules_are_stored_by_their_canonical_names() {
        let r = rules(serde_json::json!([
            {"kind": "pod", "afterDays": 7},
            {"mediaType": "web", "afterDays": 90},
            {"kind": "details", "fieldset": "cisco.base.comment", "never": true},
        ]));
        let stored: Vec<RetentionRule> = r.iter().map(Rule::to_wire).collect();
        assert_eq!(
            serde_json::to_value(&stored).expect("json"),
            serde_json::json!([
                {"kind": "activity", "afterDays": 7},
                {"kind": "activity", "mediaType": "web", "afterDays": 90},
                {"kind": "detail", "fieldset": "cisco.base.comment", "never": true},
            ])
        );
        let text = serde_json::to_string(&RetentionRules { rules: stored }).expect("json");
        assert_eq!(
            stored_rules(&text),
            Ok(r),
            "what is stored reads back the same"
        );
        assert_eq!(
            rules(serde_json::json!([{"kind": "activity", "mediaType": "web", "afterDays": 90}]))
                [0]
            .to_string(),
            "activity mediaType=web afterDays=90"
        );
    }
}
