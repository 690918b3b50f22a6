//! Who is calling: the peer's uid from `SO_PEERCRED`, its groups from the user database
//! (`SO_PEERCRED` alone gives only the primary group).

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

/// Whether `uid` may change things: root, or a member of `admin_group`.
pub fn is_admin(uid: u32, admin_group: &str) -> Result<bool, String> {
    if uid == 0 {
        return Ok(true);
    }
    let Some(group) = Group::from_name(admin_group)
        .map_err(|e| format!("looking up group {admin_group}: {e}"))?
    else {
        return Ok(false);
    };
    let Some(user) =
        User::from_uid(Uid::from_raw(uid)).map_err(|e| format!("looking up uid {uid}: {e}"))?
    else {
        return Ok(false);
    };
    if user.gid == group.gid {
        return Ok(true);
    }
    let name = std::ffi::CString::new(user.name.as_bytes())
        .map_err(|_| format!("user name of uid {uid} has a NUL byte"))?;
    let groups: Vec<Gid> =
        getgrouplist(&name, user.gid).map_err(|e| format!("groups of {}: {e}", user.name))?;
    Ok(groups.contains(&group.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_admin_and_unknown_groups_or_users_are_not() {
        assert_eq!(is_admin(0, "no-such-group-virtsync"), Ok(true));
        assert_eq!(is_admin(65534, "no-such-group-virtsync"), Ok(false));
        // nobody (65534) is not in group root.
        assert_eq!(is_admin(65534, "root"), Ok(false));
        assert_eq!(is_admin(4_000_000, "root"), Ok(false), "no such user");
    }
}
