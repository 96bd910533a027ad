-- o7s.lua: a Wireshark dissector for Ouroboros 0.23 (the wire formats o7s speaks).
--
--   wireshark -X lua_script:tools/wireshark/o7s.lua capture.pcap
--   tshark    -X lua_script:tools/wireshark/o7s.lua -r capture.pcap -O o7s -V
--   or copy the file to ~/.local/lib/wireshark/plugins/
--
-- Registered on Ethertype 0xA000 (eth-dix), LLC SAP 0x80 (eth-llc management; data SAPs are
-- learnt from the flow allocations seen) and UDP port 3435 (udp4/udp6 layers); the three
-- are preferences. Decodes the lower-layer headers, the management messages (name hashes,
-- QoS, the 0.23 OAP header with certificate, key exchange, request hash and signature; the
-- 0.22 OAP header of tutorial 06; the 0.21 message of tutorial 04), oping payloads and FRCT
-- headers, and the unicast layer carried on N-1 flows: DT PCI, flow allocator, LSAs, CEP,
-- enrolment and DHT messages. Which N-1 flow carries what is learnt from the connection
-- establishment message that opens it; a flow first seen later is guessed from its SDUs
-- and the guess is marked (expert note "o7s.guess").
--
-- Byte orders follow docs/WIRE.md: big-endian, except the DT PCI's address and eid and
-- oping's timestamps (little-endian, as the reference writes them on x86).

local o7s = Proto("o7s", "Ouroboros 0.23 (o7s)")

-- Preferences ---------------------------------------------------------------------------
o7s.prefs.ethertype = Pref.uint("Ethertype of eth-dix layers", 0xA000, "default 0xA000")
o7s.prefs.udp_port = Pref.uint("UDP port of udp layers", 3435, "default 3435")
o7s.prefs.hash_len = Pref.uint("Name hash length in FLOW_REQs (0: guess)", 0,
    "32 for SHA3-256, 28, 48, 64; 0 tries them in turn")
o7s.prefs.guess = Pref.bool("Guess unicast N-1 flows not seen set up", true,
    "label flows whose SDUs look like LSAs or DT PDUs")

-- Value strings --------------------------------------------------------------------------
local eth_codes = { [0] = "FLOW_REQ", [1] = "FLOW_REPLY", [2] = "NAME_QUERY_REQ", [3] = "NAME_QUERY_REPLY" }
local udp_codes = { [1] = "FLOW_REQ", [2] = "FLOW_REPLY" }
local fa_codes = { [0] = "FLOW_REQ", [1] = "FLOW_REPLY", [2] = "FLOW_UPDATE" }
local dht_codes = { [0] = "STORE", [1] = "FIND_NODE_REQ", [2] = "FIND_NODE_RSP", [3] = "FIND_VALUE_REQ",
    [4] = "FIND_VALUE_RSP" }
local cubes = { [0] = "BE", [1] = "VIDEO", [2] = "VOICE" }
local nids = {
    [0] = "none", [415] = "prime256v1", [715] = "secp384r1", [716] = "secp521r1", [1034] = "X25519",
    [1035] = "X448", [1126] = "ffdhe2048", [1127] = "ffdhe3072", [1128] = "ffdhe4096",
    [895] = "aes-128-gcm", [898] = "aes-192-gcm", [901] = "aes-256-gcm", [904] = "aes-128-ctr",
    [905] = "aes-192-ctr", [906] = "aes-256-ctr", [1018] = "chacha20-poly1305", [672] = "sha256",
    [673] = "sha384", [674] = "sha512", [675] = "sha224", [1096] = "sha3-224", [1097] = "sha3-256",
    [1098] = "sha3-384", [1099] = "sha3-512", [1056] = "blake2b512", [1057] = "blake2s256",
}
local digest_len = { [0] = 48, [672] = 32, [1097] = 32, [673] = 48, [1098] = 48, [674] = 64,
    [1099] = 64, [1056] = 64, [675] = 28, [1096] = 28, [1057] = 32 }
local sha3_of_len = { [28] = "SHA3_224", [32] = "SHA3_256", [48] = "SHA3_384", [64] = "SHA3_512" }
local oping_types = { [0] = "ECHO_REQUEST", [1] = "ECHO_REPLY" }

-- Fields ---------------------------------------------------------------------------------
local F = {
    layer = ProtoField.string("o7s.layer", "Lower layer"),
    eid = ProtoField.uint32("o7s.eid", "Endpoint id", base.HEX),
    length = ProtoField.uint16("o7s.length", "SDU length"),
    padding = ProtoField.bytes("o7s.padding", "Padding"),
    llc_dsap = ProtoField.uint8("o7s.llc.dsap", "DSAP (logical)", base.HEX),
    llc_ssap = ProtoField.uint8("o7s.llc.ssap", "SSAP (logical)", base.HEX),
    code = ProtoField.uint8("o7s.code", "Message code", base.DEC, eth_codes),
    udp_code = ProtoField.uint8("o7s.udp.code", "Message code", base.DEC, udp_codes),
    seid = ProtoField.uint16("o7s.seid", "Sender endpoint id", base.HEX),
    deid = ProtoField.uint16("o7s.deid", "Receiver endpoint id", base.HEX),
    mssap = ProtoField.uint8("o7s.mgmt.ssap", "Sender SAP", base.HEX),
    mdsap = ProtoField.uint8("o7s.mgmt.dsap", "Receiver SAP", base.HEX),
    req_eid = ProtoField.uint32("o7s.udp.requester_eid", "Requester's eid (s_eid)", base.HEX),
    rsp_eid = ProtoField.uint32("o7s.udp.responder_eid", "Responder's eid (d_eid)", base.HEX),
    response = ProtoField.int32("o7s.response", "Response"),
    cypher_s = ProtoField.uint16("o7s.cypher_s", "cypher_s (0.21)"),
    q_delay = ProtoField.uint32("o7s.qos.delay", "Delay (ms)"),
    q_bw = ProtoField.uint64("o7s.qos.bandwidth", "Bandwidth (bit/s)"),
    q_avail = ProtoField.uint8("o7s.qos.availability", "Availability"),
    q_loss = ProtoField.uint32("o7s.qos.loss", "Loss"),
    q_ber = ProtoField.uint32("o7s.qos.ber", "Bit error rate"),
    q_inorder = ProtoField.uint8("o7s.qos.in_order", "In order"),
    q_maxgap = ProtoField.uint32("o7s.qos.max_gap", "Maximum gap (ms)"),
    q_timeout = ProtoField.uint32("o7s.qos.timeout", "Peer timeout (ms)"),
    q_cube = ProtoField.string("o7s.qos.cube", "QoS cube"),
    hash = ProtoField.bytes("o7s.hash", "Name hash"),
    hash_algo = ProtoField.string("o7s.hash.algo", "Hash algorithm (by length)"),
    oap_id = ProtoField.bytes("o7s.oap.id", "OAP id"),
    oap_ts = ProtoField.absolute_time("o7s.oap.timestamp", "Timestamp", base.UTC),
    oap_cipher = ProtoField.uint16("o7s.oap.cipher", "Cipher NID", base.DEC, nids),
    oap_kdf = ProtoField.uint16("o7s.oap.kdf", "KDF NID", base.DEC, nids),
    oap_md = ProtoField.uint16("o7s.oap.md", "Digest NID", base.DEC, nids),
    oap_crt_len = ProtoField.uint16("o7s.oap.crt_len", "Certificate length"),
    oap_kex_flags = ProtoField.uint16("o7s.oap.kex_flags", "KEX flags (F raw/hybrid, R client encaps)", base.HEX, nil, 0xC000),
    oap_kex_len = ProtoField.uint16("o7s.oap.kex_len", "KEX length", base.DEC, nil, 0x3FFF),
    oap_data_len = ProtoField.uint16("o7s.oap.data_len", "Data length"),
    oap_crt = ProtoField.bytes("o7s.oap.crt", "Certificate (DER X.509)"),
    oap_subject = ProtoField.string("o7s.oap.crt.subject_cn", "Subject CN"),
    oap_issuer = ProtoField.string("o7s.oap.crt.issuer_cn", "Issuer CN"),
    oap_kex = ProtoField.bytes("o7s.oap.kex", "Key exchange"),
    oap_data = ProtoField.bytes("o7s.oap.data", "Piggy-backed data"),
    oap_req_hash = ProtoField.bytes("o7s.oap.req_hash", "Request hash"),
    oap_sig = ProtoField.bytes("o7s.oap.signature", "Signature"),
    oap_eph = ProtoField.bytes("o7s.oap.eph", "Ephemeral key (0.22)"),
    sdu = ProtoField.bytes("o7s.sdu", "SDU"),
    enc_iv = ProtoField.bytes("o7s.sdu.iv", "IV (if encrypted)"),
    oping_type = ProtoField.uint32("o7s.oping.type", "oping type", base.DEC, oping_types),
    oping_id = ProtoField.uint32("o7s.oping.id", "oping id"),
    oping_sec = ProtoField.uint64("o7s.oping.tv_sec", "Sent at (s, monotonic)"),
    oping_nsec = ProtoField.uint64("o7s.oping.tv_nsec", "Sent at (ns)"),
    ocbr_seq = ProtoField.uint64("o7s.ocbr.seqnr", "ocbr sequence number"),
    ocbr_fill = ProtoField.bytes("o7s.ocbr.filler", "ocbr filler"),
    frct_flags = ProtoField.uint8("o7s.frct.flags", "FRCT flags", base.HEX),
    frct_rwe = ProtoField.uint24("o7s.frct.rwe", "Window edge"),
    frct_seqno = ProtoField.uint32("o7s.frct.seqno", "Sequence number"),
    frct_ackno = ProtoField.uint32("o7s.frct.ackno", "Ack number"),
    dt_dst = ProtoField.uint32("o7s.dt.dst", "Destination address", base.HEX),
    dt_qc = ProtoField.uint8("o7s.dt.qc", "QoS cube", base.DEC, cubes),
    dt_ttl = ProtoField.uint8("o7s.dt.ttl", "TTL"),
    dt_ecn = ProtoField.uint8("o7s.dt.ecn", "ECN"),
    dt_eid = ProtoField.uint64("o7s.dt.eid", "Endpoint id", base.HEX),
    fa_code = ProtoField.uint8("o7s.fa.code", "Flow allocator code", base.DEC, fa_codes),
    fa_saddr = ProtoField.uint64("o7s.fa.s_addr", "Source address", base.HEX),
    fa_reid = ProtoField.uint64("o7s.fa.r_eid", "Receiver eid", base.HEX),
    fa_seid = ProtoField.uint64("o7s.fa.s_eid", "Sender eid", base.HEX),
    fa_ece = ProtoField.uint16("o7s.fa.ece", "ECE"),
    lsa_d = ProtoField.uint64("o7s.lsa.d_addr", "Destination address", base.HEX),
    lsa_s = ProtoField.uint64("o7s.lsa.s_addr", "Source address", base.HEX),
    lsa_seq = ProtoField.uint64("o7s.lsa.seqno", "Sequence number"),
    cep_comp = ProtoField.string("o7s.cep.comp_name", "Component"),
    cep_proto = ProtoField.string("o7s.cep.protocol", "Protocol"),
    cep_addr = ProtoField.uint64("o7s.cep.address", "Address", base.HEX),
    dht_code = ProtoField.uint32("o7s.dht.code", "DHT code", base.DEC, dht_codes),
    dht_key = ProtoField.bytes("o7s.dht.key", "DHT key"),
    oep_id = ProtoField.bytes("o7s.oep.id", "Enrolment id"),
    pb = ProtoField.bytes("o7s.pb", "Protobuf field"),
    role = ProtoField.string("o7s.n1_role", "N-1 flow carries"),
}
local fl = {}
for _, f in pairs(F) do fl[#fl + 1] = f end
o7s.fields = fl

local E = {
    malformed = ProtoExpert.new("o7s.malformed", "Malformed Ouroboros message", expert.group.MALFORMED,
        expert.severity.ERROR),
    truncated = ProtoExpert.new("o7s.truncated", "Frame cut short by the capture (snaplen)",
        expert.group.UNDECODED, expert.severity.NOTE),
    guess = ProtoExpert.new("o7s.guess", "Guessed interpretation", expert.group.ASSUMPTION,
        expert.severity.NOTE),
}
o7s.experts = { E.malformed, E.truncated, E.guess }

local hash_len_of, oap_response_fits -- defined below

-- Helpers --------------------------------------------------------------------------------
local band, rshift = bit32.band, bit32.rshift

local function hex(range, max)
    if range:len() == 0 then return "" end
    local h = range:bytes():tohex():lower()
    if max and range:len() > max then return h:sub(1, max * 2) .. "..." end
    return h
end

local function malformed(tree, range, why)
    tree:add_tvb_expert_info(E.malformed, range, "Malformed: " .. why)
    return false
end

-- The bytes that are really there: a frame cut short by the capture has fewer.
local function avail(tvb, off)
    return math.max(0, tvb:len() - off)
end

-- State kept across frames (in frame order; frames visited again reuse their result).
local state = {}
local function reset_state()
    state.roles = {}      -- flow key -> { role = ..., learnt = bool }
    state.frame_role = {} -- frame number -> { role, how }
    state.oap_md = {}     -- OAP id (hex) -> the request's md_nid
    state.sdus = {}       -- flow key -> { lsa = n, dt = n, total = n }
    state.llc_saps = {}   -- learnt LLC data SAPs (wire values)
    state.ocbr_last = {}  -- flow key -> last 8-byte LE number seen at the start of its SDUs
    state.ocbr_frame = {} -- frame/flow -> whether that SDU continued the sequence
end
reset_state()
function o7s.init() reset_state() end

-- QoS ------------------------------------------------------------------------------------
local function qos_cube(delay, bw_hi, bw_lo, avail_, max_gap)
    local bw_small = bw_hi == 0 and bw_lo <= 100000
    if delay <= 50 and bw_small and avail_ >= 5 and max_gap <= 50 then return "VOICE" end
    if delay <= 100 and avail_ >= 3 and max_gap <= 100 then return "VIDEO" end
    return "BE"
end

-- Adds QoS fields given the ranges of each; returns a short text.
local function add_qos(tree, r)
    local t = tree:add(o7s, r.whole, "QoS")
    t:add(F.q_delay, r.delay)
    t:add(F.q_bw, r.bandwidth)
    t:add(F.q_avail, r.availability)
    t:add(F.q_loss, r.loss)
    t:add(F.q_ber, r.ber)
    t:add(F.q_inorder, r.in_order)
    t:add(F.q_maxgap, r.max_gap)
    t:add(F.q_timeout, r.timeout)
    local cube = qos_cube(r.delay:uint(), r.bandwidth:range(0, 4):uint(), r.bandwidth:range(4, 4):uint(),
        r.availability:uint(), r.max_gap:uint())
    t:add(F.q_cube, cube):set_generated()
    t:append_text(string.format(" (timeout %d ms, cube %s)", r.timeout:uint(), cube))
    return cube
end

-- Certificates: the common names of issuer and subject (issuer comes first in the DER).
local function cert_names(range)
    local b = range:bytes()
    local names = {}
    local i = 0
    while i + 5 < b:len() and #names < 2 do
        if b:get_index(i) == 0x06 and b:get_index(i + 1) == 0x03 and b:get_index(i + 2) == 0x55
            and b:get_index(i + 3) == 0x04 and b:get_index(i + 4) == 0x03 then
            local len = b:get_index(i + 6)
            if len and i + 7 + len <= b:len() then
                names[#names + 1] = range:range(i + 7, len)
            end
            i = i + 7
        else
            i = i + 1
        end
    end
    return names[1], names[2]
end

local function spki_kind(range)
    local h = range:bytes():tohex():lower()
    if h:find("06082a8648ce3d030107", 1, true) then return "EC P-256 SubjectPublicKeyInfo" end
    if h:find("06052b81040022", 1, true) then return "EC P-384 SubjectPublicKeyInfo" end
    if h:find("06052b81040023", 1, true) then return "EC P-521 SubjectPublicKeyInfo" end
    if h:sub(1, 18) == "302a300506032b656e" then return "X25519 SubjectPublicKeyInfo" end
    return nil
end

-- OAP ------------------------------------------------------------------------------------
-- Parses the fixed part; returns a table or nil, reason.
local function oap023_parse(tvb, off, len)
    if len < 36 then return nil, "OAP header shorter than 36 bytes" end
    local h = {
        off = off,
        crt_len = tvb(off + 30, 2):uint(),
        kex_field = tvb(off + 32, 2):uint(),
        data_len = tvb(off + 34, 2):uint(),
        md = tvb(off + 28, 2):uint(),
    }
    h.kex_len = band(h.kex_field, 0x3FFF)
    local body = 36 + h.crt_len + h.kex_len + h.data_len
    if body > len then return nil, string.format("OAP lengths (crt %d kex %d data %d) exceed the %d bytes there",
            h.crt_len, h.kex_len, h.data_len, len - 36) end
    h.tail = len - body
    h.len = len
    return h
end

-- Whether an OAP 0.23 request parses exactly in `len` bytes.
local function oap023_request_fits(tvb, off, len)
    local h = oap023_parse(tvb, off, len)
    if not h then return false end
    if h.crt_len == 0 then return h.tail == 0 end
    return h.tail > 0
end

local function oap022_fits(tvb, off, len)
    if len < 24 + 8 then return false end
    local p = off + 24
    local stop = off + len
    for _ = 1, 4 do
        if p + 2 > stop then return false end
        p = p + 2 + tvb(p, 2):uint()
    end
    return p == stop
end

local function oap022(tvb, off, len, tree)
    local t = tree:add(o7s, tvb(off, len), "OAP header (0.22, tutorial 06)")
    t:add(F.oap_id, tvb(off, 16))
    local p = off + 24
    local parts = { F.oap_crt, F.oap_eph, F.oap_data, F.oap_sig }
    local names = { "crt", "eph", "data", "sig" }
    local lens = {}
    for i = 1, 4 do
        local n = tvb(p, 2):uint()
        lens[i] = names[i] .. " " .. n
        if n > 0 then t:add(parts[i], tvb(p + 2, n)) end
        p = p + 2 + n
    end
    t:append_text(": " .. table.concat(lens, ", "))
    return "oap-0.22"
end

-- Dissects an OAP part of `len` bytes at `off`; `response` says which role.
local function oap(tvb, off, len, tree, response)
    if len == 0 then return "" end
    local h, why = oap023_parse(tvb, off, len)
    local id_hex = len >= 16 and hex(tvb(off, 16)) or ""
    local hl = 0
    if h and response then
        hl = digest_len[state.oap_md[id_hex] or h.md] or 48
    end
    local strict = h and h.tail >= hl and ((h.crt_len == 0 and h.tail == hl) or (h.crt_len > 0 and h.tail > hl))
    if not strict and oap022_fits(tvb, off, len) then
        return oap022(tvb, off, len, tree)
    end
    local t = tree:add(o7s, tvb(off, len), response and "OAP response (0.23)" or "OAP request (0.23)")
    if not h then
        malformed(t, tvb(off, len), why)
        return "oap malformed"
    end
    if not response then state.oap_md[id_hex] = h.md end
    t:add(F.oap_id, tvb(off, 16))
    local ts = tvb(off + 16, 8):uint64()
    local secs = (ts / UInt64(1000000000)):tonumber()
    local nsecs = (ts % UInt64(1000000000)):tonumber()
    t:add(F.oap_ts, tvb(off + 16, 8), NSTime.new(secs, nsecs))
    t:add(F.oap_cipher, tvb(off + 24, 2))
    t:add(F.oap_kdf, tvb(off + 26, 2))
    t:add(F.oap_md, tvb(off + 28, 2))
    t:add(F.oap_crt_len, tvb(off + 30, 2))
    t:add(F.oap_kex_flags, tvb(off + 32, 2))
    t:add(F.oap_kex_len, tvb(off + 32, 2))
    t:add(F.oap_data_len, tvb(off + 34, 2))
    local p = off + 36
    if h.crt_len > 0 then
        local c = t:add(F.oap_crt, tvb(p, h.crt_len))
        local issuer, subject = cert_names(tvb(p, h.crt_len))
        if issuer then c:add(F.oap_issuer, issuer) end
        if subject then c:add(F.oap_subject, subject) end
        if subject then c:append_text(" (CN " .. subject:string() .. ")") end
        p = p + h.crt_len
    end
    if h.kex_len > 0 then
        local k = t:add(F.oap_kex, tvb(p, h.kex_len))
        local kind = spki_kind(tvb(p, h.kex_len))
        if kind then k:append_text(" (" .. kind .. ")") end
        p = p + h.kex_len
    end
    if h.data_len > 0 then
        t:add(F.oap_data, tvb(p, h.data_len))
        p = p + h.data_len
    end
    if response and h.tail >= hl and hl > 0 then
        t:add(F.oap_req_hash, tvb(p, hl))
        p = p + hl
    end
    local rest = off + len - p
    if rest > 0 then t:add(F.oap_sig, tvb(p, rest)) end
    if not strict then
        malformed(t, tvb(off, len), string.format("OAP tail of %d bytes does not fit (request hash %d, %s)",
            h.tail, hl, h.crt_len > 0 and "signed" or "unsigned"))
    end
    local s = string.format("oap %s", nids[tvb(off + 24, 2):uint()] or "?")
    if h.crt_len > 0 then s = s .. " signed" end
    return s
end

-- The name hash length of a FLOW_REQ tail (hash | OAP request), or nil if none fits.
hash_len_of = function(tvb, off, len, udp)
    local cands
    if udp then
        cands = { 16 }
    elseif o7s.prefs.hash_len > 0 then
        cands = { o7s.prefs.hash_len }
    else
        cands = { 32, 28, 48, 64 }
    end
    for _, l in ipairs(cands) do
        if len >= l and (len == l or oap023_request_fits(tvb, off + l, len - l) or oap022_fits(tvb, off + l, len - l)) then
            return l
        end
    end
    return nil
end

-- Whether an OAP response (0.23 or 0.22) fits `len` bytes.
oap_response_fits = function(tvb, off, len)
    local h = oap023_parse(tvb, off, len)
    if h then
        local hl = digest_len[state.oap_md[hex(tvb(off, 16))] or h.md] or 48
        if h.tail >= hl and ((h.crt_len == 0 and h.tail == hl) or (h.crt_len > 0 and h.tail > hl)) then
            return true
        end
    end
    return oap022_fits(tvb, off, len)
end

-- Name hash and OAP after a FLOW_REQ (eth, llc, unicast FA): finds the hash length.
local function hash_and_oap(tvb, off, len, tree, udp)
    local pick = hash_len_of(tvb, off, len, udp)
    if not pick then
        malformed(tree, tvb(off, len), "no name hash length fits the OAP request that follows")
        return "hash ?"
    end
    local h = tree:add(F.hash, tvb(off, pick))
    local algo = (udp and pick == 16) and "MD5" or sha3_of_len[pick]
    if algo then h:add(F.hash_algo, algo):set_generated() end
    local s = "hash " .. hex(tvb(off, pick), 4)
    local o = oap(tvb, off + pick, len - pick, tree, false)
    return s .. (o ~= "" and (" " .. o) or "")
end

local function name_hash(tvb, off, len, tree, udp)
    if len == 0 then return "" end
    local h = tree:add(F.hash, tvb(off, len))
    local algo = (udp and len == 16) and "MD5" or sha3_of_len[len]
    if algo then
        h:add(F.hash_algo, algo):set_generated()
    else
        h:add_tvb_expert_info(E.malformed, tvb(off, len), string.format("%d bytes is no known hash length", len))
    end
    return "hash " .. hex(tvb(off, len), 4)
end

-- Protobuf ---------------------------------------------------------------------------------
local S = {}
S.contact = { name = "dht_contact_msg", [1] = { "id", "bytes" }, [2] = { "addr", "u64hex" } }
S.find_req = { name = "dht_find_req_msg", [1] = { "cookie", "u64hex" }, [2] = { "key", "bytes", F.dht_key } }
S.find_node_rsp = { name = "dht_find_node_rsp_msg", [1] = { "cookie", "u64hex" }, [2] = { "key", "bytes", F.dht_key },
    [3] = { "contacts", "msg", S.contact } }
S.find_value_rsp = { name = "dht_find_value_rsp_msg", [1] = { "values", "bytes" } }
S.store = { name = "dht_store_msg", [1] = { "key", "bytes", F.dht_key }, [2] = { "val", "bytes" }, [3] = { "exp", "uint" } }
S.dht = { name = "dht_msg", [1] = { "code", "uint", F.dht_code, dht_codes }, [2] = { "src", "msg", S.contact },
    [3] = { "store", "msg", S.store }, [4] = { "find", "msg", S.find_req }, [5] = { "node", "msg", S.find_node_rsp },
    [6] = { "val", "msg", S.find_value_rsp } }
S.cep = { name = "cep_msg", [1] = { "comp_name", "string", F.cep_comp }, [2] = { "protocol", "string", F.cep_proto },
    [3] = { "pref_version", "int" }, [4] = { "supp_version", "int" }, [5] = { "pref_syntax", "int", nil, syntaxes },
    [6] = { "supp_syntax", "int" }, [7] = { "syntax_spec", "bytes" }, [8] = { "address", "u64hex", F.cep_addr } }
local hash_algos = { [0] = "SHA3_224", [1] = "SHA3_256", [2] = "SHA3_384", [3] = "SHA3_512", [4] = "CRC32", [5] = "MD5" }
local ipcp_types = { [0] = "LOCAL", [1] = "UNICAST", [2] = "BROADCAST", [3] = "ETH_LLC", [4] = "ETH_DIX", [5] = "UDP4",
    [6] = "UDP6" }
local syntaxes = { [0] = "GPB", [1] = "ASN_1", [2] = "FIXED" }
S.layer_info = { name = "layer_info_msg", [1] = { "name", "string" }, [2] = { "dir_hash_algo", "uint", nil, hash_algos } }
S.ls = { name = "ls_config_msg", [1] = { "pol", "uint", nil, { [0] = "SIMPLE", [1] = "LFA", [2] = "ECMP" } }, [2] = { "t_recalc", "uint" }, [3] = { "t_update", "uint" },
    [4] = { "t_timeo", "uint" } }
S.routing = { name = "routing_config_msg", [1] = { "pol", "uint", nil, { [0] = "LINK_STATE" } }, [2] = { "ls", "msg", S.ls } }
S.dt = { name = "dt_config_msg", [1] = { "addr_size", "uint" }, [2] = { "eid_size", "uint" }, [3] = { "max_ttl", "uint" },
    [4] = { "routing", "msg", S.routing } }
S.dht_conf = { name = "dir_dht_config_msg", [1] = { "alpha", "uint" }, [2] = { "k", "uint" }, [3] = { "t_expire", "uint" },
    [4] = { "t_refresh", "uint" }, [5] = { "t_replicate", "uint" }, [6] = { "peer", "u64hex" } }
S.dir = { name = "dir_config_msg", [1] = { "pol", "uint" }, [2] = { "dht", "msg", S.dht_conf } }
S.uni = { name = "uni_config_msg", [1] = { "dt", "msg", S.dt }, [2] = { "dir", "msg", S.dir },
    [3] = { "addr_auth_type", "uint", nil, { [0] = "FLAT_RANDOM" } }, [4] = { "cong_avoid", "uint", nil, { [0] = "NONE", [1] = "MB_ECN" } } }
S.eth_conf = { name = "eth_config_msg", [1] = { "dev", "string" }, [2] = { "ethertype", "uint" } }
S.udp4_conf = { name = "udp4_config_msg", [1] = { "ip_addr", "uint" }, [2] = { "port", "uint" }, [3] = { "dns_addr", "uint" } }
S.udp6_conf = { name = "udp6_config_msg", [1] = { "ip_addr", "bytes" }, [2] = { "port", "uint" }, [3] = { "dns_addr", "bytes" } }
S.conf = { name = "ipcp_config_msg", [1] = { "layer_info", "msg", S.layer_info }, [2] = { "ipcp_type", "uint", nil, ipcp_types },
    [3] = { "unicast", "msg", S.uni }, [4] = { "udp4", "msg", S.udp4_conf }, [5] = { "udp6", "msg", S.udp6_conf },
    [6] = { "eth", "msg", S.eth_conf } }
S.enroll_req = { name = "enroll_req_msg", [1] = { "id", "bytes", F.oep_id } }
S.enroll_resp = { name = "enroll_resp_msg", [1] = { "id", "bytes", F.oep_id }, [2] = { "t_sec", "int" },
    [3] = { "t_nsec", "int" }, [4] = { "response", "int" }, [5] = { "conf", "msg", S.conf } }
S.enroll_ack = { name = "enroll_ack_msg", [1] = { "id", "bytes", F.oep_id }, [2] = { "result", "int" } }

-- Reads a varint at `p`; returns UInt64 value and the next offset, or nil.
local function varint(tvb, p, stop)
    local v = UInt64(0)
    local shift = 0
    while p < stop and shift < 70 do
        local b = tvb(p, 1):uint()
        v = v:bor(UInt64(band(b, 0x7F)):lshift(shift))
        p = p + 1
        if b < 0x80 then return v, p end
        shift = shift + 7
    end
    return nil
end

-- Walks the fields of `len` bytes; returns true, or false and a reason.
local function pb_walk(tvb, off, len, tree, schema, found)
    local p, stop = off, off + len
    while p < stop do
        local key, np = varint(tvb, p, stop)
        if not key then return false, "truncated varint key" end
        local knum = key:tonumber()
        local num, wt = math.floor(knum / 8), knum % 8
        local spec = schema and schema[num]
        local label = spec and spec[1] or ("field " .. num)
        local start = p
        p = np
        if wt == 0 then
            local v, q = varint(tvb, p, stop)
            if not v then return false, "truncated varint" end
            local shown
            if spec and spec[2] == "int" and q - p == 10 then
                shown = "-" .. tostring(UInt64(0) - v) -- a negative int32/int64
            elseif spec and spec[4] then
                shown = tostring(v) .. " (" .. (spec[4][v:tonumber()] or "unknown") .. ")"
            elseif spec and spec[2] == "u64hex" then
                shown = "0x" .. v:tohex():gsub("^0+(%x)", "%1")
            else
                shown = tostring(v)
            end
            local item
            if spec and spec[3] then
                item = tree:add(spec[3], tvb(p, q - p), spec[3] == F.cep_addr and v or v:tonumber())
                item:set_text(label .. ": " .. shown)
            else
                tree:add(tvb(start, q - start), label .. ": " .. shown)
            end
            found[label] = shown
            p = q
        elseif wt == 2 then
            local n, q = varint(tvb, p, stop)
            if not n then return false, "truncated length" end
            n = n:tonumber()
            if q + n > stop then return false, string.format("field %d claims %d bytes, %d there", num, n, stop - q) end
            local kind = spec and spec[2] or "bytes"
            if kind == "msg" then
                local sub = tree:add(o7s, tvb(start, q + n - start), label .. " (" .. spec[3].name .. ")")
                local ok, why = pb_walk(tvb, q, n, sub, spec[3], {})
                if not ok then return false, label .. ": " .. why end
            elseif kind == "string" then
                local s = n > 0 and tvb(q, n):string() or ""
                if spec[3] then tree:add(spec[3], tvb(q, math.max(n, 0))):set_text(label .. ": " .. s)
                else tree:add(tvb(start, q + n - start), label .. ": " .. s) end
                found[label] = s
            else
                local h = n > 0 and hex(tvb(q, n), 32) or ""
                if spec and spec[3] and n > 0 then tree:add(spec[3], tvb(q, n)):set_text(label .. ": " .. h)
                else tree:add(tvb(start, q + n - start), label .. ": " .. h .. " (" .. n .. " bytes)") end
                found[label] = h
            end
            p = q + n
        elseif wt == 1 then
            if p + 8 > stop then return false, "truncated fixed64" end
            tree:add(tvb(start, p + 8 - start), label .. ": " .. tostring(tvb(p, 8):le_uint64()))
            p = p + 8
        elseif wt == 5 then
            if p + 4 > stop then return false, "truncated fixed32" end
            tree:add(tvb(start, p + 4 - start), label .. ": " .. tvb(p, 4):le_uint())
            p = p + 4
        else
            return false, "wire type " .. wt .. " is not valid here"
        end
    end
    return true
end

-- The field numbers present at the top level of a message (to tell its type).
local function pb_numbers(tvb, off, len)
    local seen, p, stop = {}, off, off + len
    while p < stop do
        local key, q = varint(tvb, p, stop)
        if not key then break end
        local k = key:tonumber()
        local wt = k % 8
        seen[math.floor(k / 8)] = true
        if wt == 0 then
            local _, r = varint(tvb, q, stop)
            if not r then break end
            p = r
        elseif wt == 2 then
            local n, r = varint(tvb, q, stop)
            if not n then break end
            p = r + n:tonumber()
        elseif wt == 1 then
            p = q + 8
        elseif wt == 5 then
            p = q + 4
        else
            break
        end
    end
    return seen
end

-- Dissects `len` bytes at `off` as the protobuf message `schema`; returns a summary.
local function protobuf(tvb, off, len, tree, schema, what)
    local t = tree:add(o7s, tvb(off, len), what .. " (" .. schema.name .. ", protobuf)")
    local found = {}
    local ok, why = pb_walk(tvb, off, len, t, schema, found)
    if not ok then malformed(t, tvb(off, len), why) end
    return found, ok
end

-- Whether the SDU starts like a cep_msg: field 1 (string) with a known component name.
local cep_roles = { ["Management"] = "mgmt", ["Data Transfer"] = "dt", ["Enrollment"] = "enrol", ["OEP"] = "enrol" }
local function cep_role(tvb, off, len)
    if len < 2 or tvb(off, 1):uint() ~= 0x0A then return nil end
    local n = tvb(off + 1, 1):uint()
    if n == 0 or 2 + n > len then return nil end
    return cep_roles[tvb(off + 2, n):string()]
end

-- Application SDUs -----------------------------------------------------------------------
local function oping_ok(tvb, off, len)
    if len < 64 or len > 1500 then return false end
    local kind = tvb(off, 4):uint()
    local nsec = tvb(off + 16, 8):le_uint64()
    if kind > 1 or nsec >= UInt64(1000000000) then return false end
    for i = 24, len - 1 do
        if tvb(off + i, 1):uint() ~= 0 then return false end
    end
    return true
end

local function oping(tvb, off, len, tree)
    if not oping_ok(tvb, off, len) then return nil end
    local kind = tvb(off, 4):uint()
    local t = tree:add(o7s, tvb(off, len), "oping " .. oping_types[kind])
    t:add(F.oping_type, tvb(off, 4))
    t:add(F.oping_id, tvb(off + 4, 4))
    t:add_le(F.oping_sec, tvb(off + 8, 8))
    t:add_le(F.oping_nsec, tvb(off + 16, 8))
    return string.format("oping %s id %d", oping_types[kind], tvb(off + 4, 4):uint())
end

local frct_names = { { 0x01, "DATA" }, { 0x02, "DRF" }, { 0x04, "ACK" }, { 0x08, "FC" }, { 0x10, "RDVS" },
    { 0x20, "FFGM" }, { 0x40, "MFGM" } }

-- ocbr: seqnr (8, little-endian) | filler. Recognised when an SDU's number follows the one
-- before it on the same flow (the first SDU of a run shows as plain bytes).
local function ocbr(tvb, off, len, tree, key, pinfo)
    if len < 8 or not key then return nil end
    local seq = tvb(off, 8):le_uint64()
    local fk = pinfo.number .. "/" .. key
    local is = state.ocbr_frame[fk]
    if is == nil then
        local last = state.ocbr_last[key]
        is = last ~= nil and seq == last + UInt64(1)
        state.ocbr_last[key] = seq
        state.ocbr_frame[fk] = is
    end
    if not is then return nil end
    local t = tree:add(o7s, tvb(off, len), "ocbr")
    t:add_le(F.ocbr_seq, tvb(off, 8))
    if len > 8 then t:add(F.ocbr_fill, tvb(off + 8, len - 8)) end
    return "ocbr seqnr " .. tostring(seq)
end

local function app_sdu(tvb, off, len, tree, key, pinfo)
    if len == 0 then
        tree:add(o7s, tvb(off, 0), "Keepalive (empty SDU)")
        return "keepalive"
    end
    local s = oping(tvb, off, len, tree)
    if s then return s end
    s = ocbr(tvb, off, len, tree, key, pinfo)
    if s then return s end
    if len >= 12 then
        local flags = tvb(off, 1):uint()
        local inner_len = len - 12
        local known = flags ~= 0 and band(flags, 0x80) == 0
        if known and ((inner_len == 0 and band(flags, 0x04) ~= 0) or oping_ok(tvb, off + 12, inner_len)) then
            local names = {}
            for _, f in ipairs(frct_names) do
                if band(flags, f[1]) ~= 0 then names[#names + 1] = f[2] end
            end
            local t = tree:add(o7s, tvb(off, 12), "FRCT header (" .. table.concat(names, "|") .. ")")
            t:add(F.frct_flags, tvb(off, 1))
            t:add(F.frct_rwe, tvb(off + 1, 3))
            t:add(F.frct_seqno, tvb(off + 4, 4))
            t:add(F.frct_ackno, tvb(off + 8, 4))
            t:add_proto_expert_info(E.guess, "FRCT recognised from the bytes")
            local inner = inner_len > 0 and (" " .. oping(tvb, off + 12, inner_len, tree)) or ""
            return "frct " .. table.concat(names, "|") .. " seqno " .. tvb(off + 4, 4):uint() .. inner
        end
    end
    local t = tree:add(F.sdu, tvb(off, len))
    if len >= 28 then
        t:append_text(string.format(" (opaque; if encrypted: iv 12, ciphertext %d, tag 16, key phase %d)",
            len - 28, rshift(tvb(off, 1):uint(), 7)))
    end
    return "sdu " .. len .. " bytes"
end

-- Unicast layer --------------------------------------------------------------------------
local function fa_msg(tvb, off, len, tree)
    if len < 61 then
        malformed(tree, tvb(off, len), "flow allocator message shorter than 61 bytes")
        return "FA malformed"
    end
    local code = tvb(off + 58, 1):uint()
    local t = tree:add(o7s, tvb(off, len), "Flow allocator " .. (fa_codes[code] or ("code " .. code)))
    t:add(F.fa_code, tvb(off + 58, 1))
    t:add(F.fa_saddr, tvb(off, 8))
    t:add(F.fa_reid, tvb(off + 8, 8))
    t:add(F.fa_seid, tvb(off + 16, 8))
    t:add(F.response, tvb(off + 32, 4))
    local s = "FA " .. (fa_codes[code] or ("code " .. code))
    if code == 2 then
        t:add(F.fa_ece, tvb(off + 56, 2))
        s = s .. " ece " .. tvb(off + 56, 2):uint()
    else
        add_qos(t, { whole = tvb(off + 24, 37), bandwidth = tvb(off + 24, 8), delay = tvb(off + 36, 4),
            loss = tvb(off + 40, 4), ber = tvb(off + 44, 4), max_gap = tvb(off + 48, 4), timeout = tvb(off + 52, 4),
            availability = tvb(off + 59, 1), in_order = tvb(off + 60, 1) })
    end
    local rest = len - 61
    if code == 0 then
        s = s .. " " .. hash_and_oap(tvb, off + 61, rest, t, false)
    elseif code == 1 then
        local o = oap(tvb, off + 61, rest, t, true)
        s = s .. string.format(" response %d", tvb(off + 32, 4):int()) .. (o ~= "" and (" " .. o) or "")
    end
    return s
end

local function dt_pdu(tvb, off, len, tree, key, pinfo)
    if len < 15 then
        malformed(tree, tvb(off, len), "DT PDU shorter than its 15-byte PCI")
        return "dt malformed"
    end
    local t = tree:add(o7s, tvb(off, 15), "DT PCI")
    t:add_le(F.dt_dst, tvb(off, 4))
    t:add(F.dt_qc, tvb(off + 4, 1))
    t:add(F.dt_ttl, tvb(off + 5, 1))
    t:add(F.dt_ecn, tvb(off + 6, 1))
    t:add_le(F.dt_eid, tvb(off + 7, 8))
    local dst = tvb(off, 4):le_uint()
    local eid = tvb(off + 7, 8):le_uint64()
    t:append_text(string.format(": dst 0x%08x eid 0x%s ttl %d ecn %d", dst, eid:tohex():gsub("^0+(%x)", "%1"),
        tvb(off + 5, 1):uint(), tvb(off + 6, 1):uint()))
    local s = string.format("DT dst 0x%08x", dst)
    local body, blen = off + 15, len - 15
    if eid == UInt64(0) then
        return s .. " " .. fa_msg(tvb, body, blen, tree)
    elseif eid == UInt64(1) then
        local f = protobuf(tvb, body, blen, tree, S.dht, "DHT")
        local code = tonumber(f.code or "")
        return s .. " DHT " .. (code and dht_codes[code] or "?")
    elseif eid < UInt64(64) then
        tree:add(F.sdu, tvb(body, blen)):append_text(" (component eid " .. tostring(eid) .. ")")
        return s .. " component " .. tostring(eid)
    end
    return s .. " " .. app_sdu(tvb, body, blen, tree, key .. "/dt/" .. tostring(eid), pinfo)
end

local function lsa(tvb, off, len, tree)
    local t = tree:add(o7s, tvb(off, len), "Link-state advertisement")
    t:add(F.lsa_d, tvb(off, 8))
    t:add(F.lsa_s, tvb(off + 8, 8))
    t:add(F.lsa_seq, tvb(off + 16, 8))
    return string.format("LSA d 0x%s s 0x%s seqno %s", tvb(off + 4, 4):bytes():tohex():lower(),
        tvb(off + 12, 4):bytes():tohex():lower(), tostring(tvb(off + 16, 8):uint64()))
end

local function looks_like_lsa(tvb, off, len)
    if len ~= 24 then return false end
    local dh, dl = tvb(off, 4):uint(), tvb(off + 4, 4):uint()
    local sh, sl = tvb(off + 8, 4):uint(), tvb(off + 12, 4):uint()
    return dh == 0 and sh == 0 and dl ~= 0 and sl ~= 0 and dl ~= sl
end

local function looks_like_dt(tvb, off, len)
    if len < 15 then return false end
    local qc, ttl = tvb(off + 4, 1):uint(), tvb(off + 5, 1):uint()
    local eid = tvb(off + 7, 8):le_uint64()
    local fd = eid:band(UInt64(0xFFFFFFFF))
    return ttl > 0 and qc <= 2 and tvb(off, 4):le_uint() ~= 0
        and (eid < UInt64(64) or (fd >= UInt64(64) and fd <= UInt64(0xFFFF)))
end

local role_names = { mgmt = "unicast layer management flow", dt = "unicast layer data-transfer flow",
    enrol = "unicast layer enrolment flow" }

-- Decides what the SDU of lower-layer flow `key` is, in frame order; returns role, how.
local function sdu_role(tvb, off, len, key, pinfo)
    local known = state.frame_role[pinfo.number]
    if known then return known[1], known[2] end
    local role, how
    local cep = cep_role(tvb, off, len)
    if cep then
        state.roles[key] = cep
        role, how = "cep", "cep"
    elseif state.roles[key] then
        role, how = state.roles[key], "learnt"
    elseif o7s.prefs.guess then
        -- Not seen set up: guess from the SDUs so far (LSAs, or DT PDUs to one address).
        -- Keepalives (empty SDUs) go on every kind of flow: they are not counted.
        local g = state.sdus[key] or { lsa = 0, dt = 0, n = 0 }
        state.sdus[key] = g
        if len > 0 then
            g.n = g.n + 1
            if looks_like_lsa(tvb, off, len) then g.lsa = g.lsa + 1 end
            if looks_like_dt(tvb, off, len) then g.dt = g.dt + 1 end
        end
        if g.n == 0 then -- nothing but keepalives so far: no guess
        elseif g.lsa == g.n then
            role, how = "mgmt", "guess"
        elseif g.dt * 10 >= g.n * 9 then
            role, how = "dt", "guess"
        end
    end
    state.frame_role[pinfo.number] = { role, how }
    return role, how
end

-- An SDU of an N-1 flow of a lower layer.
local function lower_sdu(tvb, off, len, tree, key, pinfo)
    local role, how = sdu_role(tvb, off, len, key, pinfo)
    if role == "cep" then
        local f = protobuf(tvb, off, len, tree, S.cep, "Connection establishment")
        return "CEP " .. (f.comp_name or "?") .. " " .. (f.protocol or "") .. " address " .. (f.address or "?")
    end
    if role then
        local what = role_names[role] .. (how == "guess" and " (GUESS: not seen set up)" or " (its CEP says so)")
        local note = tree:add(F.role, what)
        note:set_generated()
        if how == "guess" then
            note:add_proto_expert_info(E.guess, "Guessed: the capture does not show this N-1 flow being set up")
        end
    end
    if len == 0 then
        -- A keepalive (o7s: a flow end quiet for a quarter of its QoS timeout sends an
        -- empty SDU), on any N-1 flow: no DT PCI, no enrolment message.
        return app_sdu(tvb, off, len, tree, key, pinfo)
    end
    if role == "mgmt" and looks_like_lsa(tvb, off, len) then
        return lsa(tvb, off, len, tree)
    elseif role == "dt" then
        return dt_pdu(tvb, off, len, tree, key, pinfo)
    elseif role == "enrol" then
        -- Request (id only), response (id, time, response, conf) or ack (id, result).
        local schema, what = S.enroll_req, "OEP enrolment request"
        if len > 0 then
            local probe = pb_numbers(tvb, off, len)
            if probe[5] or probe[3] then
                schema, what = S.enroll_resp, "OEP enrolment response"
            elseif probe[2] then
                schema, what = S.enroll_ack, "OEP enrolment ack"
            end
        end
        protobuf(tvb, off, len, tree, schema, what)
        return what
    end
    return app_sdu(tvb, off, len, tree, key, pinfo)
end

-- Lower layers ---------------------------------------------------------------------------
local function eth_mgmt_qos(tvb, off)
    return { whole = tvb(off + 4, 35), loss = tvb(off + 4, 4), bandwidth = tvb(off + 8, 8), ber = tvb(off + 16, 4),
        max_gap = tvb(off + 20, 4), delay = tvb(off + 24, 4), timeout = tvb(off + 28, 4),
        in_order = tvb(off + 36, 1), availability = tvb(off + 38, 1) }
end

-- Whether the tail after an eth management message with `code` fits it.
local function eth_tail_fits(tvb, off, len, code)
    if code == 0 then return hash_len_of(tvb, off, len, false) ~= nil end
    if code == 1 then return len == 0 or oap_response_fits(tvb, off, len) end
    return code <= 3
end

-- The tail after an eth/llc management message with `code`.
local function eth_tail(tvb, off, len, tree, code)
    if code == 0 then return hash_and_oap(tvb, off, len, tree, false) end
    if code == 1 then return oap(tvb, off, len, tree, true) end
    return name_hash(tvb, off, len, tree, false)
end

-- Tutorial 04's 0.21 management message (38 bytes): seid deid loss bw ber max_gap delay timeout
-- cypher_s(2) in_order code availability response(int8), then the name hash.
local function dix021_fits(tvb, off, len)
    if len < 38 then return false end
    local code = tvb(off + 35, 1):uint()
    local rest = len - 38
    if code == 1 then return rest == 0 end
    return code <= 3 and sha3_of_len[rest] ~= nil
end

local function dix021(tvb, off, len, t)
    local code = tvb(off + 35, 1):uint()
    local m = t:add(o7s, tvb(off, 38), "Management (0.21, tutorial 04) " .. (eth_codes[code] or ("code " .. code)))
    m:add(F.code, tvb(off + 35, 1))
    m:add(F.seid, tvb(off, 2))
    m:add(F.deid, tvb(off + 2, 2))
    m:add(F.cypher_s, tvb(off + 32, 2))
    m:add(F.response, tvb(off + 37, 1))
    add_qos(m, { whole = tvb(off + 4, 34), loss = tvb(off + 4, 4), bandwidth = tvb(off + 8, 8), ber = tvb(off + 16, 4),
        max_gap = tvb(off + 20, 4), delay = tvb(off + 24, 4), timeout = tvb(off + 28, 4), in_order = tvb(off + 34, 1),
        availability = tvb(off + 36, 1) })
    local tail = ""
    if len > 38 then tail = " " .. name_hash(tvb, off + 38, len - 38, m, false) end
    return string.format("%s seid 0x%x deid 0x%x (0.21)%s", eth_codes[code] or ("code " .. code), tvb(off, 2):uint(),
        tvb(off + 2, 2):uint(), tail)
end

local function dix_mgmt(tvb, off, len, t)
    local modern = len >= 39 and eth_tail_fits(tvb, off + 39, len - 39, tvb(off + 37, 1):uint())
    if not modern and dix021_fits(tvb, off, len) then
        return dix021(tvb, off, len, t)
    end
    if len < 39 then
        malformed(t, tvb(off, len), "management message shorter than 39 bytes")
        return "management malformed"
    end
    local code = tvb(off + 37, 1):uint()
    local m = t:add(o7s, tvb(off, len), "Management " .. (eth_codes[code] or ("code " .. code)))
    m:add(F.code, tvb(off + 37, 1))
    m:add(F.seid, tvb(off, 2))
    m:add(F.deid, tvb(off + 2, 2))
    m:add(F.response, tvb(off + 32, 4))
    if code <= 1 then add_qos(m, eth_mgmt_qos(tvb, off)) end
    local tail = eth_tail(tvb, off + 39, len - 39, m, code)
    local info = string.format("%s seid 0x%x deid 0x%x", eth_codes[code] or ("code " .. code), tvb(off, 2):uint(),
        tvb(off + 2, 2):uint())
    if code == 1 then info = info .. " response " .. tvb(off + 32, 4):int() end
    if code > 3 then malformed(m, tvb(off + 37, 1), "unknown management code " .. code) end
    if tail ~= "" then info = info .. " " .. tail end
    return info
end

local function dix(tvb, pinfo, tree)
    local t = tree:add(o7s, tvb(), "Ouroboros eth-dix")
    local l = t:add(F.layer, "eth-dix")
    l:set_generated()
    if tvb:len() < 4 then
        if tvb:reported_len() >= 4 then
            t:add_proto_expert_info(E.truncated)
            return tvb:len(), "cut by the capture"
        end
        malformed(t, tvb(), "shorter than eid and length")
        return tvb:len(), "malformed"
    end
    local eid, len = tvb(0, 2):uint(), tvb(2, 2):uint()
    t:add(F.eid, tvb(0, 2))
    t:add(F.length, tvb(2, 2))
    if 4 + len > tvb:reported_len() then
        malformed(t, tvb(2, 2), string.format("length %d, %d bytes in the frame", len, tvb:reported_len() - 4))
        return tvb:len(), string.format("eid 0x%04x bad length %d", eid, len)
    end
    if 4 + len > tvb:len() then
        t:add_proto_expert_info(E.truncated)
        if tvb:len() > 4 then t:add(F.sdu, tvb(4)):append_text(" (partial)") end
        return tvb:len(), string.format("eid 0x%04x length %d (cut by the capture)", eid, len)
    end
    local info
    if eid == 0 then
        info = dix_mgmt(tvb, 4, len, t)
    else
        local key = "dix/" .. eid .. "/" .. tostring(pinfo.dl_dst)
        info = string.format("eid 0x%04x ", eid) .. lower_sdu(tvb, 4, len, t, key, pinfo)
    end
    if tvb:len() > 4 + len then t:add(F.padding, tvb(4 + len)) end
    return 4 + len, info
end

local function reverse8(b)
    local r = 0
    for i = 0, 7 do
        if band(b, 2 ^ i) ~= 0 then r = r + 2 ^ (7 - i) end
    end
    return r
end

local llc_table = DissectorTable.get("llc.dsap")
local LLC_MGMT = 0x80 -- SAP 1, bit-reversed

-- What follows DSAP, SSAP and control (the LLC dissector shows those); `dsap` is the wire value.
local function llc(tvb, pinfo, tree, dsap)
    local t = tree:add(o7s, tvb(), "Ouroboros eth-llc")
    local l = t:add(F.layer, "eth-llc")
    l:set_generated()
    local len = tvb:len()
    if dsap ~= LLC_MGMT then
        local key = "llc/" .. dsap .. "/" .. tostring(pinfo.dl_dst)
        t:add(F.llc_dsap, reverse8(dsap))
        return len, string.format("sap 0x%02x ", reverse8(dsap)) .. lower_sdu(tvb, 0, len, t, key, pinfo)
    end
    if len < 37 then
        malformed(t, tvb(), "management message shorter than 37 bytes")
        return len, "management malformed"
    end
    local code = tvb(2, 1):uint()
    local m = t:add(o7s, tvb(0, len), "Management " .. (eth_codes[code] or ("code " .. code)))
    m:add(F.code, tvb(2, 1))
    m:add(F.mssap, tvb(0, 1))
    m:add(F.mdsap, tvb(1, 1))
    m:add(F.response, tvb(32, 4))
    if code <= 1 then
        add_qos(m, { whole = tvb(3, 34), availability = tvb(3, 1), loss = tvb(4, 4), bandwidth = tvb(8, 8),
            ber = tvb(16, 4), max_gap = tvb(20, 4), delay = tvb(24, 4), timeout = tvb(28, 4), in_order = tvb(36, 1) })
        -- The flow's data SAPs (logical here, bit-reversed on the wire) are Ouroboros from now on.
        for _, s in ipairs({ tvb(0, 1):uint(), tvb(1, 1):uint() }) do
            local w = reverse8(s)
            if s > 1 and not state.llc_saps[w] then
                state.llc_saps[w] = true
                llc_table:add(w, o7s)
            end
        end
    end
    local tail = eth_tail(tvb, 37, len - 37, m, code)
    local info = string.format("%s ssap 0x%02x dsap 0x%02x", eth_codes[code] or ("code " .. code), tvb(0, 1):uint(),
        tvb(1, 1):uint())
    if code == 1 then info = info .. " response " .. tvb(32, 4):int() end
    if tail ~= "" then info = info .. " " .. tail end
    return len, info
end

local function udp(tvb, pinfo, tree)
    local t = tree:add(o7s, tvb(), "Ouroboros udp layer")
    local l = t:add(F.layer, "udp")
    l:set_generated()
    if tvb:len() < 4 then
        if tvb:reported_len() >= 4 then
            t:add_proto_expert_info(E.truncated)
            return tvb:len(), "cut by the capture"
        end
        malformed(t, tvb(), "datagram shorter than its 4-byte eid")
        return tvb:len(), "malformed"
    end
    local eid = tvb(0, 4):uint()
    t:add(F.eid, tvb(0, 4))
    if tvb:len() < tvb:reported_len() then
        t:add_proto_expert_info(E.truncated)
        if tvb:len() > 4 then t:add(F.sdu, tvb(4)):append_text(" (partial)") end
        return tvb:len(), string.format("eid 0x%x (cut by the capture)", eid)
    end
    local len = tvb:len() - 4
    if eid ~= 0 then
        local key = "udp/" .. eid .. "/" .. tostring(pinfo.dst)
        return tvb:len(), string.format("eid 0x%x ", eid) .. lower_sdu(tvb, 4, len, t, key, pinfo)
    end
    if tvb:len() < 47 then
        malformed(t, tvb(), "management message shorter than 47 bytes")
        return tvb:len(), "management malformed"
    end
    local code = tvb(44, 1):uint()
    local m = t:add(o7s, tvb(0, tvb:len()), "Management " .. (udp_codes[code] or ("code " .. code)))
    m:add(F.udp_code, tvb(44, 1))
    m:add(F.req_eid, tvb(4, 4))
    m:add(F.rsp_eid, tvb(8, 4))
    m:add(F.response, tvb(12, 4))
    add_qos(m, { whole = tvb(16, 31), bandwidth = tvb(16, 8), delay = tvb(24, 4), loss = tvb(28, 4),
        ber = tvb(32, 4), max_gap = tvb(36, 4), timeout = tvb(40, 4), availability = tvb(45, 1),
        in_order = tvb(46, 1) })
    local tail = ""
    if code == 1 then
        tail = hash_and_oap(tvb, 47, tvb:len() - 47, m, true)
    elseif code == 2 then
        tail = oap(tvb, 47, tvb:len() - 47, m, true)
    else
        malformed(m, tvb(44, 1), "unknown management code " .. code)
    end
    local info = string.format("%s requester 0x%x responder 0x%x", udp_codes[code] or ("code " .. code),
        tvb(4, 4):uint(), tvb(8, 4):uint())
    if code == 2 then info = info .. " response " .. tvb(12, 4):int() end
    if tail ~= "" then info = info .. " " .. tail end
    return tvb:len(), info
end

function o7s.dissector(tvb, pinfo, tree)
    local up, m = o7s.prefs.udp_port, pinfo.match_uint
    local ok, consumed, info = pcall(function()
        if m == up and (pinfo.src_port == up or pinfo.dst_port == up) then
            return udp(tvb, pinfo, tree)
        elseif m == o7s.prefs.ethertype then
            return dix(tvb, pinfo, tree)
        end
        return llc(tvb, pinfo, tree, m)
    end)
    pinfo.cols.protocol = "O7S"
    if not ok then
        -- A fault in this script must not hide the frame: it is shown, as an error.
        local t = tree:add(o7s, tvb(), "Ouroboros (dissector error)")
        t:add_proto_expert_info(E.malformed, "o7s.lua: " .. tostring(consumed))
        pinfo.cols.info = "o7s.lua error: " .. tostring(consumed)
        return tvb:len()
    end
    pinfo.cols.info = info
    return consumed
end

-- Registration ---------------------------------------------------------------------------
local registered = {}
local function register()
    local et, up = DissectorTable.get("ethertype"), DissectorTable.get("udp.port")
    if registered.et then et:remove(registered.et, o7s) end
    if registered.up then up:remove(registered.up, o7s) end
    registered.et, registered.up = o7s.prefs.ethertype, o7s.prefs.udp_port
    et:add(registered.et, o7s)
    up:add(registered.up, o7s)
end
o7s.prefs_changed = register
register()
llc_table:add(LLC_MGMT, o7s)
