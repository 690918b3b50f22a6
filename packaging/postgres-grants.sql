-- Least privilege for the virtsync daemon's PostgreSQL role. Run as the owner of the
-- cloud API's tables, after `virtsync migrate` (which needs the owner: postgres.owner_url).
-- The role name virtsync_daemon is an example; the test suite runs this file as shipped.
--   CREATE ROLE virtsync_daemon LOGIN;   -- password: see README ("Credentials")

GRANT USAGE ON SCHEMA virtsync TO virtsync_daemon;
GRANT SELECT ON virtsync.schema_version TO virtsync_daemon;
GRANT SELECT, INSERT, UPDATE ON virtsync.vm_fence, virtsync.host_capabilities TO virtsync_daemon;

-- Read the VM rows (to know which exist and for anti-entropy); write only the columns
-- virtsync owns. Drop the runtime_* names in compat mode, and status/cpu_count/
-- memory_mb/guest_os if `owns` excludes them.
GRANT SELECT ON vms TO virtsync_daemon;
GRANT UPDATE (
    status, cpu_count, memory_mb, guest_os, updated_at,
    runtime_cpu_cores, runtime_cpu_sockets, runtime_cpu_threads, runtime_cpu_model,
    runtime_memory_guest, runtime_memory_current, runtime_memory_requested,
    runtime_primary_ip, runtime_network_interfaces,
    runtime_guest_os_id, runtime_guest_os_name, runtime_guest_os_version, runtime_guest_os_kernel,
    runtime_phase, runtime_node_name, runtime_qos_class, runtime_machine_type,
    runtime_architecture, runtime_volume_details, runtime_agent_connected,
    runtime_hypervisor_type, runtime_vmi_updated_at
) ON vms TO virtsync_daemon;
