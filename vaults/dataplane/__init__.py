"""The storage engine under the vaults: region object stores (`objectstore`), content-defined chunks sealed
into packs (`chunkstore`), direct I/O (`directio`), the backup reader and writer (`backup`), key wrapping
(`keys`), reading back and verifying (`readback`) and opening tenant paths safely (`tenantfs`).

It knows vaults, points and chunks as rows; the rules about them (who may do what, when) are the vault
services'. Other apps reach the engine through these modules' public names, never their `_private` ones.
"""
