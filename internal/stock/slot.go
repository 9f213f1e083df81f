package stock

// Redis Cluster maps a key to slot CRC16(tag) mod 16384, where tag is the
// text inside the first {…}. Every key of a SKU is tagged {SKU}, so the slot
// of a SKU is the slot of its tag.

const clusterSlots = 16384

// Slot returns the Redis Cluster hash slot of every key of sku.
func Slot(sku string) int { return int(crc16([]byte(sku)) % clusterSlots) }

// crc16 is CRC-16/XMODEM, the variant Redis Cluster uses.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
