# Installable the PowerShell way (issue 15): build.ps1 -Task Package makes a .nupkg with the manifest's metadata, and a user
# installs it with Install-PSResource from a repository (here a local folder) into a clean module path, imports it by
# name and runs it, with no source tree and none of this test run's environment.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    . (Join-Path $env:GALLIUM_REPO 'tests/package/CleanSession.ps1')
    $manifest = Import-PowerShellDataFile (Join-Path $env:GALLIUM_REPO 'Gallium.PciPassthrough.psd1')
    # The Test task packs the module first (out/package); run alone, this suite packs the module under test itself.
    $packageDir = Join-Path (Split-Path $env:GALLIUM_MODULE_PATH) 'package'
    if (-not (Get-ChildItem $packageDir -Filter '*.nupkg' -ErrorAction Ignore)) {
        $packageDir = Join-Path $TestDrive 'package'
        New-Item -ItemType Directory -Path $packageDir | Out-Null
        Compress-PSResource -Path $env:GALLIUM_MODULE_PATH -DestinationPath $packageDir
    }
    $nupkg = @(Get-ChildItem $packageDir -Filter '*.nupkg')
    $work = Join-Path ([IO.Path]::GetTempPath()) ('gallium-pkg-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
    New-Item -ItemType Directory -Path $work | Out-Null
    $installed = & (Join-Path $env:GALLIUM_REPO 'tests/package/Install-GalliumPackage.ps1') -PackageDirectory $packageDir -WorkRoot $work
}

AfterAll {
    if ($work -and (Test-Path $work)) { Remove-Item -Recurse -Force $work }
}

Describe 'The .nupkg' {
    It 'is one package named after the module and its version' {
        $nupkg.Count | Should -Be 1
        $nupkg[0].Name | Should -Be "Gallium.PciPassthrough.$($manifest.ModuleVersion).nupkg"
    }

    It 'carries the manifest''s license, project, release notes and tags in its nuspec' {
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($nupkg[0].FullName)
        try {
            $entry = $zip.Entries | Where-Object FullName -eq 'Gallium.PciPassthrough.nuspec'
            $reader = [IO.StreamReader]::new($entry.Open())
            [xml] $nuspec = $reader.ReadToEnd()
            $reader.Dispose()
            $files = @($zip.Entries.FullName)
        } finally { $zip.Dispose() }
        $m = $nuspec.package.metadata
        $m.id | Should -Be 'Gallium.PciPassthrough'
        $m.version | Should -Be $manifest.ModuleVersion
        $m.licenseUrl | Should -Be $manifest.PrivateData.PSData.LicenseUri
        $m.projectUrl | Should -Be $manifest.PrivateData.PSData.ProjectUri
        $m.releaseNotes | Should -Be $manifest.PrivateData.PSData.ReleaseNotes
        $m.tags -split ' ' | Should -Contain 'VFIO'
        foreach ($f in 'Gallium.PciPassthrough.psd1', 'Gallium.PciPassthrough.dll', 'Gallium.Pci.dll', 'Gallium.PciPassthrough.format.ps1xml',
            'Gallium.PciPassthrough.types.ps1xml', 'en-US/Gallium.PciPassthrough.dll-Help.xml', 'en-US/about_Gallium_PciPassthrough.help.txt', 'LICENSE') {
            $files | Should -Contain $f
        }
    }
}

Describe 'Install-PSResource into a clean module path' {
    It 'installs the module below the new home''s CurrentUser module path' {
        $installed.ModuleBase | Should -Be (Join-Path $installed.Home ".local/share/powershell/Modules/Gallium.PciPassthrough/$($manifest.ModuleVersion)")
        Test-Path (Join-Path $installed.ModuleBase 'Gallium.PciPassthrough.psd1') | Should -BeTrue
    }

    It 'imports by name in a fresh pwsh that has no source tree, and every cmdlet is there with its help' {
        $probe = @'
$m = Import-Module Gallium.PciPassthrough -PassThru -ErrorAction Stop
"BASE=$($m.ModuleBase)"
"CMDLETS=$(@($m.ExportedCmdlets.Keys | Sort-Object) -join ',')"
"SYNOPSIS=$((Get-Help Get-GalliumPciDevice).Synopsis)"
"REPO=$([bool]$env:GALLIUM_REPO)"
'@
        $out = Invoke-CleanPwsh -HomeDirectory $installed.Home -Command $probe -WorkingDirectory $work
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
        ($out | Where-Object { $_ -like 'BASE=*' }) | Should -Be "BASE=$($installed.ModuleBase)"
        ($out | Where-Object { $_ -like 'CMDLETS=*' }) | Should -Be ('CMDLETS=' + (@($manifest.CmdletsToExport | Sort-Object) -join ','))
        ($out | Where-Object { $_ -like 'SYNOPSIS=*' }) | Should -BeLike 'SYNOPSIS=Lists the host*'
        ($out | Where-Object { $_ -like 'REPO=*' }) | Should -Be 'REPO=False'
    }

    It 'reads this machine''s devices from the installed copy (real /sys, read only)' {
        $out = Invoke-CleanPwsh -HomeDirectory $installed.Home -WorkingDirectory $work -Command 'Import-Module Gallium.PciPassthrough; @(Get-GalliumPciDevice -WarningAction SilentlyContinue).Count'
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
        [int]@($out)[-1] | Should -Be @(& lspci -D).Count
    }

    It 'says Update-Help has nothing to download for it (the help ships in the module)' {
        $out = Invoke-CleanPwsh -HomeDirectory $installed.Home -WorkingDirectory $work -Command @'
Import-Module Gallium.PciPassthrough
Update-Help -Module Gallium.PciPassthrough -UICulture en-US -ErrorAction SilentlyContinue -ErrorVariable e
"ID=$($e[0].FullyQualifiedErrorId)"
"HELPFILE=$(Test-Path (Join-Path (Get-Module Gallium.PciPassthrough).ModuleBase 'en-US/Gallium.PciPassthrough.dll-Help.xml'))"
'@
        ($out | Where-Object { $_ -like 'ID=*' }) | Should -BeLike 'ID=HelpInfoUriNotFound,*'
        ($out | Where-Object { $_ -like 'HELPFILE=*' }) | Should -Be 'HELPFILE=True'
    }
}
