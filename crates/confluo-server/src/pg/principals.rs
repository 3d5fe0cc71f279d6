//! `CREATE USER|ROLE name [WITH] PASSWORD '...' [IN GROUP g, ...]` and `DROP USER|ROLE
//! [IF EXISTS] name`, for members of the `admins` group: the same principals `confluo
//! users` manages, from any client.

use datafusion::sql::sqlparser::ast::{Expr, ObjectType, Password, Statement, Value};
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;

use confluo_govern::{GovernError, PrincipalKind};

use super::Shared;
use super::encode::user_error;

/// The group whose members may manage principals over SQL.
pub const ADMINS: &str = "admins";

/// Whether a statement creates or drops a principal.
pub fn is_principal_statement(s: &Statement) -> bool {
    matches!(s, Statement::CreateRole(_))
        || matches!(
            s,
            Statement::Drop {
                object_type: ObjectType::User | ObjectType::Role,
                ..
            }
        )
}

/// Runs `CREATE USER` or `DROP USER` as `user`.
pub async fn run(shared: &Shared, user: &str, statement: &Statement) -> PgWireResult<Response> {
    let identity = &shared.identity;
    let me = identity.get(user).await.map_err(govern)?;
    let admin = me.is_some_and(|p| p.groups.iter().any(|g| g == ADMINS));
    if !admin {
        return Err(user_error(
            "42501",
            format!(
                "permission denied: only members of group `{ADMINS}` may create or drop users (`confluo users join {user} {ADMINS}`)"
            ),
        ));
    }
    match statement {
        Statement::CreateRole(r) => {
            let password = match &r.password {
                Some(Password::Password(Expr::Value(v))) => match &v.value {
                    Value::SingleQuotedString(p) => p.clone(),
                    _ => return Err(user_error("42601", "the password must be a string literal")),
                },
                _ => {
                    return Err(user_error(
                        "42601",
                        "CREATE USER needs a password: CREATE USER name WITH PASSWORD '...'",
                    ));
                }
            };
            let groups: Vec<String> = r
                .in_group
                .iter()
                .chain(&r.in_role)
                .map(|g| g.value.clone())
                .collect();
            for name in &r.names {
                let name = name.to_string().trim_matches('"').to_string();
                if identity.get(&name).await.map_err(govern)?.is_some() {
                    if r.if_not_exists {
                        continue;
                    }
                    return Err(user_error(
                        "42710",
                        format!("role \"{name}\" already exists"),
                    ));
                }
                identity
                    .add(&name, PrincipalKind::User, &password, &groups)
                    .await
                    .map_err(govern)?;
            }
            Ok(Response::Execution(Tag::new("CREATE ROLE")))
        }
        Statement::Drop {
            names, if_exists, ..
        } => {
            for name in names {
                let name = name.to_string().trim_matches('"').to_string();
                if name == user {
                    return Err(user_error("55006", "current user cannot be dropped"));
                }
                match identity.remove(&name).await {
                    Ok(()) => {}
                    Err(GovernError::NotFound(_)) if *if_exists => {}
                    Err(GovernError::NotFound(_)) => {
                        return Err(user_error(
                            "42704",
                            format!("role \"{name}\" does not exist"),
                        ));
                    }
                    Err(e) => return Err(govern(e)),
                }
            }
            Ok(Response::Execution(Tag::new("DROP ROLE")))
        }
        _ => Err(user_error("0A000", "not a user statement")),
    }
}

fn govern(e: GovernError) -> pgwire::error::PgWireError {
    match e {
        GovernError::Invalid(m) => user_error("22023", m),
        other => user_error("XX000", other.to_string()),
    }
}
