-- The `vms` table of an SSVirt-shaped self-service cloud API: an example, for a lab
-- or a demo, of the table virtsync writes into.
--
-- SSVirt is a self-service cloud API for KubeVirt with a vCloud-compatible interface
-- (organizations, virtual data centers, vApps, VMs). It keeps one record per VM in this
-- `vms` table: the cloud API inserts the row when a user creates a VM (with the
-- KubeVirt namespace and VirtualMachine name) and soft-deletes it (sets deleted_at)
-- when the VM is deleted.
--
-- virtsync never creates this table, nor inserts or deletes its rows, in production:
-- the cloud API owns it. virtsync only UPDATEs the live row of each VM it sees, and only
-- when a value really changed. It needs:
--   namespace, vm_name, deleted_at   to find the live row of a VM: the VM's namespace
--                                    and name, deleted_at IS NULL;
--   id                               to tell the rows apart (read, never written);
--   status, cpu_count, memory_mb,    the columns it writes (the "status" and "legacy"
--   guest_os                         groups of `owns`);
--   updated_at                       set to now() in every row it changes.
-- The runtime_* columns (IP addresses, node, guest OS details, ...) are not part of
-- this table: `virtsync migrate` adds them with postgres.schema = "extended" (it also
-- creates virtsync's own schema `virtsync`, in both modes).
--
-- Every flush looks rows up by (namespace, vm_name) among the live ones, so the table
-- needs the index below (or one on (namespace, vm_name)): without it each lookup reads
-- the whole table. `virtsync migrate` creates one (virtsync_vms_live_key) when the
-- table has no usable index on (namespace, vm_name).
--
-- The test suite and `scripts/run-daemon` create the table with this file as shipped.

CREATE TABLE vms (
    id          varchar(255) PRIMARY KEY,
    name        varchar(255) NOT NULL,
    description text,
    vapp_id     varchar(255),
    vm_name     varchar(255),
    namespace   varchar(255),
    status      varchar(50),
    cpu_count   integer CHECK (cpu_count > 0),
    memory_mb   integer CHECK (memory_mb > 0),
    guest_os    varchar(255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX idx_vms_namespace_vm_name ON vms (namespace, vm_name) WHERE deleted_at IS NULL;
